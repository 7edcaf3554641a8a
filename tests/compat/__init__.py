"""The previous release's code against this release's schema (``PREVIOUS_RELEASE`` names its commit)."""
