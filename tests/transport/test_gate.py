"""`Gatekeeper.client_ip`: whose X-Forwarded-For is believed (``server.trusted_proxies``)."""

from __future__ import annotations

from twisted.trial import unittest

from umoc.transport.gate import Gatekeeper


class ClientAddressTests(unittest.SynchronousTestCase):
    def test_a_listed_proxy_is_believed_and_anyone_else_is_not(self) -> None:
        gate = Gatekeeper(trusted_proxies=("10.0.0.5",))
        self.assertEqual(gate.client_ip("10.0.0.5", {"X-Forwarded-For": "198.51.100.7"}), "198.51.100.7")
        self.assertEqual(gate.client_ip("10.0.0.6", {"X-Forwarded-For": "198.51.100.7"}), "10.0.0.6")

    def test_a_proxy_network_covers_a_proxy_whose_address_changes(self) -> None:
        gate = Gatekeeper(trusted_proxies=("172.16.0.0/12",))
        self.assertEqual(gate.client_ip("172.18.0.4", {"x-forwarded-for": "198.51.100.7"}), "198.51.100.7")
        self.assertEqual(gate.client_ip("192.168.0.4", {"x-forwarded-for": "198.51.100.7"}), "192.168.0.4")

    def test_the_client_is_the_last_hop_that_is_not_a_proxy(self) -> None:
        gate = Gatekeeper(trusted_proxies=("10.0.0.0/24",))
        headers = {"X-Forwarded-For": "1.2.3.4, 198.51.100.7, 10.0.0.9"}
        self.assertEqual(gate.client_ip("10.0.0.5", headers), "198.51.100.7", "a client cannot forge past a proxy")
