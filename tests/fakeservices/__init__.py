"""Test-only service modules, loaded with GATEWAY_SERVICE_PACKAGES=tests.fakeservices."""
