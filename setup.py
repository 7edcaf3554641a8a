import re
from glob import glob
from pathlib import Path

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py


class BuildPy(build_py):
    """Also install etc/umoc.yaml as umoc/umoc.yaml, for umoc-admin example-config: etc/ stays its one source."""

    def run(self) -> None:
        super().run()
        target = Path(self.build_lib) / "umoc" / "umoc.yaml"
        self.mkpath(str(target.parent))  # an editable build's build_lib starts empty
        self.copy_file("etc/umoc.yaml", str(target))


def _version() -> str:
    """``umoc.__version__``, read from the file's text: importing umoc here would need its dependencies installed."""
    text = Path(__file__).with_name("umoc").joinpath("__init__.py").read_text(encoding="utf-8")
    match = re.search(r'^__version__ = "([^"]+)"$', text, re.MULTILINE)
    if match is None:
        raise RuntimeError("umoc/__init__.py has no __version__ line")
    return match.group(1)


setup(
    name="umoc",
    version=_version(),
    description="UMOC: a self-hosted chat server speaking Socket.IO over WebSocket",
    long_description=open("README.rst", encoding="utf-8").read(),
    long_description_content_type="text/x-rst",
    python_requires=">=3.11",
    packages=find_packages(include=["umoc", "umoc.*"]) + ["twisted.plugins"],
    package_data={
        "umoc.storage": ["schema/*.sql"],
        "umoc.webclient": ["static/*"],
        "twisted": ["plugins/umoc_plugin.py"],
    },
    # Under <prefix>/share/: the example configuration, the systemd unit, the nginx example and the Grafana dashboard
    # from etc/, and the documentation (client API reference and its generated contract, operator guide, changelog).
    data_files=[
        ("share/umoc", ["etc/umoc.yaml", "etc/umoc.service", "etc/nginx.conf", "etc/grafana-umoc.json"]),
        ("share/doc/umoc", sorted(glob("docs/*.md")) + ["docs/asyncapi.yaml", "docs/umoc.d.ts"]),
    ],
    include_package_data=True,
    install_requires=[
        "twisted>=23.10",
        "autobahn>=23.1",
        "txredisapi>=1.4.10",
        "psycopg2-binary>=2.9",
        "treq>=23.11",
        "service-identity>=23.1",
        "pyyaml>=6.0",
        # Thumbnails of shared images (issue 32): the maintained decoder for JPEG, PNG, WebP and GIF, with
        # reduced-scale JPEG decoding (draft) and header-only size reads for the decompression-bomb check.
        "Pillow>=10.1",
        # Argon2id password hashing (OWASP parameters) instead of hand-tuned scrypt.
        "argon2-cffi>=23.1",
        # Web Push (issue 16): RFC 8188/8291 aes128gcm payload encryption (what pywebpush uses) ...
        "http-ece>=1.2",
        # ... and RFC 8292 VAPID JWTs; both build on cryptography, used directly for the keys.
        "py-vapid>=1.9",
        "cryptography>=42",
        # /metrics: the Prometheus text format, HELP/TYPE lines, histograms, a registry per node.
        "prometheus-client>=0.17",
        # The Socket.IO codec's JSON (umoc.protocol.socketio): 3-5x the standard library's speed on chat-sized
        # payloads, the same output (it falls back to the standard library for anything it would write differently).
        "orjson>=3.8",
        # The WebSocket fast path's unmasking (umoc.protocol.websocket): C, a third to a quarter of the pure path's
        # instructions; a binary wheel on PyPI (manylinux, CPython 3.8-3.13), and the code falls back without it.
        "wsaccel>=0.6.6",
        # Identity (issue 28): JSON Web Tokens and key sets (JWKS) from the operator's identity provider; the
        # crypto extra is cryptography, already required above, for RS/PS/ES/EdDSA.
        "PyJWT[crypto]>=2.8",
        # TOTP (RFC 6238) second factor: the codes and otpauth:// URIs authenticator apps read.
        "pyotp>=2.9",
    ],
    extras_require={
        "test": [
            "python-socketio[client]>=5.10",
            "websocket-client>=1.6",
            "hypothesis>=6.90",
            # .ci/run's checks: ruff (lint and format) and mypy with its Twisted/zope plugin and stubs.
            "ruff>=0.5",
            "mypy>=2.4",
            "mypy-zope>=1.0",
            "types-PyYAML",
            "types-psycopg2",
            # tests/e2e: the web client in headless Chromium (Debian's chromium and chromium-driver).
            "selenium>=4.10",
            # tests/test_packaging.py builds the wheel without build isolation (no index needed).
            "wheel>=0.40",
        ],
        # bench/compare: python-socketio's own server on aiohttp, and the profiler.
        "bench": [
            "python-socketio>=5.10",
            "aiohttp>=3.9",
            "py-spy>=0.3",
        ],
    },
    cmdclass={"build_py": BuildPy},
    entry_points={"console_scripts": ["umoc-admin=umoc.admincli:main"]},
    zip_safe=False,
)
