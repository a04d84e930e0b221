"""Shared fixtures. The reactor is looked up lazily: pytest-twisted installs it in pytest_configure."""

import pytest


@pytest.fixture(scope="session")
def reactor():
    from twisted.internet import reactor as installed  # noqa: TID251 -- tests only, after install

    return installed
