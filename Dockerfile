# UMOC in a container: one node, configured by /etc/umoc/umoc.yaml (mount your own over it).
#   docker build -t umoc .
#   docker run -p 8080:8080 -v umoc-data:/var/lib/umoc umoc            # SQLite in the volume
#   docker compose up                                                   # with PostgreSQL and Redis
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY . /src
# Non-editable, so that twistd finds the plugin; then refresh Twisted's plugin cache as root,
# since the unprivileged user cannot write it.
RUN pip install . \
    && python -c "from twisted.plugin import IPlugin, getPlugins; list(getPlugins(IPlugin))" \
    && rm -rf /src

RUN useradd --system --uid 10001 --home-dir /var/lib/umoc --shell /usr/sbin/nologin umoc \
    && install -d -o umoc -g umoc -m 0700 /var/lib/umoc \
    && install -d -m 0755 /etc/umoc \
    && umoc-admin example-config > /etc/umoc/umoc.yaml

USER umoc
WORKDIR /var/lib/umoc
# Read by twistd umoc and umoc-admin alike, so `docker exec <container> umoc-admin --config
# /etc/umoc/umoc.yaml list-users` finds the node's database whatever data_dir a mounted file names.
ENV UMOC_DATA_DIR=/var/lib/umoc
VOLUME ["/var/lib/umoc"]
EXPOSE 8080

HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2).status != 200)"]

# The example configuration listens on 127.0.0.1; in a container the port must be reachable.
CMD ["twistd", "--nodaemon", "--pidfile=", "umoc", "--config", "/etc/umoc/umoc.yaml", \
     "--listen", "tcp:8080:interface=0.0.0.0", "--data-dir", "/var/lib/umoc"]
