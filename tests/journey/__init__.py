"""Journey tests: the frontend's whole journey and the pages a person sees,
through the real gateway, the stand-in and headless Chromium."""
