"""Rules shared by the Socket.IO edge (``events``) and the HTTP edge (``web``).

Sessions, files, who may write where, user status announcements, and the
payload builders: the spec's field names live in `umoc.domain.notices.shapes`.
"""
