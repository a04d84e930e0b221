# scaleagent image: `docker build -t scaleagent:0.1.0 .` (the tag deploy/kubernetes/ uses).
# Runs as an unprivileged user; the state directory is a volume (/var/lib/scaleagent).
FROM python:3.11-slim AS build
WORKDIR /src
COPY setup.cfg pyproject.toml README.md ./
COPY scaleagent ./scaleagent
COPY twisted ./twisted
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
RUN useradd --system --uid 10001 --user-group --home-dir /var/lib/scaleagent --create-home scaleagent
COPY --from=build /wheels /wheels
# Install, then build Twisted's plugin cache now: the root filesystem is read-only at run time.
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels \
    && python -c "from twisted.plugin import IPlugin, getPlugins; list(getPlugins(IPlugin))"
COPY etc/agent.ini etc/cluster.yaml /etc/scaleagent/
# The shipped agent.ini keeps state next to the checkout; in the image it is the volume.
RUN sed -i 's|^dir = ../state$|dir = /var/lib/scaleagent|' /etc/scaleagent/agent.ini \
    && grep -q '^dir = /var/lib/scaleagent$' /etc/scaleagent/agent.ini
USER 10001:10001
WORKDIR /var/lib/scaleagent
VOLUME /var/lib/scaleagent
EXPOSE 8180
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
# In the foreground, no pidfile, text logs on stdout; --shard i/n is added by the StatefulSet.
ENTRYPOINT []
CMD ["twistd", "-n", "--pidfile=", "scaleagent", "--config", "/etc/scaleagent/agent.ini"]
