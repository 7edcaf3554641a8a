"""The browser client: static files in ``static/``, served at ``/`` by `resource.web_client_resource`."""
