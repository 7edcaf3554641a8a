"""Makes ``twistd umoc`` exist; everything else lives in umoc.tap."""

from twisted.application.service import ServiceMaker

umoc = ServiceMaker("UMOC", "umoc.tap", "UMOC chat server (Socket.IO over WebSocket)", "umoc")
