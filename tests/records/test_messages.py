"""The message records check themselves once, against the configured limits, whatever edge built them."""

from __future__ import annotations

from twisted.trial import unittest

from umoc.config import MessagesConfig
from umoc.errors import UserError
from umoc.records.messages import MAX_MENTIONS, Deletion, Edit, NewMessage, Reaction, ReadReceipt

LIMITS = MessagesConfig(max_content_length=10, max_encrypted_length=20, max_ids_per_receipt=2)


class NewMessageTests(unittest.SynchronousTestCase):
    def refused(self, message: NewMessage, why: str) -> None:
        with self.assertRaises(UserError) as caught:
            message.checked(LIMITS)
        self.assertIn(why, caught.exception.message)

    def test_a_well_formed_message_is_itself_and_mentions_come_sorted_once(self) -> None:
        plain = NewMessage(2, False, "hi")
        self.assertIs(plain.checked(LIMITS), plain)
        self.assertEqual(NewMessage(7, True, "hi", mentions=(5, 3, 5)).checked(LIMITS).mentions, (3, 5))
        file = NewMessage(2, False, '{"a":1}', "file")
        self.assertIs(file.checked(LIMITS), file)

    def test_the_configured_bounds_and_the_shape_of_a_file_message(self) -> None:
        self.refused(NewMessage(2, False, ""), "expected 1 to 10 characters")
        self.refused(NewMessage(2, False, "x" * 11), "expected 1 to 10 characters")
        self.refused(NewMessage(2, False, "a\x00"), "NUL")
        self.refused(NewMessage(2, False, "hi", encrypted_content="e" * 21), "at most 20 characters")
        self.refused(NewMessage(2, False, "[1]", "image"), "JSON object")
        self.refused(NewMessage(2, False, "hi", "sticker"), "Invalid 'type'")
        self.refused(NewMessage(2, True, "hi", mentions=tuple(range(1, MAX_MENTIONS + 2))), "mentions")

    def test_custom_types_carry_any_content(self) -> None:
        for name in ("custom:location", "custom:a", "custom:" + "x" * 40, "custom:v1.card_x-y"):
            message = NewMessage(2, False, "not json", name)
            self.assertIs(message.checked(LIMITS), message)
        for name in ("custom:", "custom:" + "x" * 41, "custom:Loc", "custom:a b", "Custom:a", "custom:é"):
            self.refused(NewMessage(2, False, "hi", name), "Invalid 'type'")

    def test_extra_is_a_json_object_bounded_in_bytes_and_depth(self) -> None:
        limits = MessagesConfig(max_extra_bytes=32)
        for extra in ({"lat": 1.5, "tags": ["a"], "n": 0}, {"k": "é" * 12}, {"a": [[[[[[[1]]]]]]]}):
            fits = NewMessage(2, False, "hi", extra=extra)  # within 32 bytes and 8 levels
            self.assertIs(fits.checked(limits), fits)
        refused = [
            ({"k": "é" * 13}, "at most 32 bytes"),  # 13 two-byte characters: 34 bytes as UTF-8 JSON
            ([1], "expected a JSON object"),
            ("{}", "expected a JSON object"),
            ({"a": float("nan")}, "expected a JSON object"),
            ({"a": [[[[[[[[1]]]]]]]]}, "at most 8 levels"),
        ]
        for extra, why in refused:
            with self.assertRaises(UserError) as caught:
                NewMessage(2, False, "hi", extra=extra).checked(limits)  # type: ignore[arg-type]
            self.assertIn(why, caught.exception.message)


class OtherRecordTests(unittest.SynchronousTestCase):
    def test_edit_receipt_deletion_and_reaction_check_themselves(self) -> None:
        with self.assertRaises(UserError):
            Edit("00000000-0000-4000-8000-000000000001", "x" * 11).checked(LIMITS)
        with self.assertRaises(UserError):
            ReadReceipt(1, ("a", "b", "c")).checked(LIMITS)
        self.assertEqual(
            Deletion("00000000-0000-4000-8000-00000000000A").message_id, "00000000-0000-4000-8000-00000000000a"
        )
        with self.assertRaises(UserError):
            Deletion("nope")
        for emoji in ("", "a b", "x" * 33, "\n"):
            with self.assertRaises(UserError):
                Reaction("00000000-0000-4000-8000-000000000001", emoji)
        self.assertEqual(Reaction("00000000-0000-4000-8000-000000000001", "👍🏽").emoji, "👍🏽")
