"""Helpers shared by the test layers: the stand-in and gateway launchers, raw
sockets, a browser cookie jar, headless Chromium, span generators."""
