"""Shared fixtures. The reactor is looked up lazily: pytest-twisted installs it in pytest_configure."""

import pytest


@pytest.fixture(scope="session")
def reactor():
    from twisted.internet import reactor as installed  # noqa: TID251 -- tests only, after install

    return installed


@pytest.fixture
def logs():
    """Every log event emitted during the test, formatted as text (the global publisher's view)."""
    from twisted.logger import formatEvent, globalLogPublisher

    lines: list[str] = []

    def observe(event):
        lines.append(formatEvent(event))

    globalLogPublisher.addObserver(observe)
    yield lines
    globalLogPublisher.removeObserver(observe)
