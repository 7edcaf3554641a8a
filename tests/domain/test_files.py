"""File rules: names that cannot be paths or tricks, and message types from the MIME allow-list."""

from __future__ import annotations

from twisted.trial import unittest

from umoc.config import UploadsConfig
from umoc.domain.files import check_file_name, message_type_for, normalise_type
from umoc.errors import UserError


class FileNameAndTypeTests(unittest.TestCase):
    def test_plain_names_pass(self) -> None:
        for name in ("image.jpg", "résumé final.pdf", "日本語.txt", ".bashrc", "a" * 255):
            self.assertEqual(check_file_name(name, 255), name)

    def test_paths_separators_controls_and_bidi_tricks_are_refused(self) -> None:
        for name in (
            "../x",
            "a/b",
            "a\\b",
            "C:x",
            "a\x00b",
            "a\nb",
            "a\x1fb",
            "a\x7fb",
            "photo\u202egpj.exe",
            ".",
            "..",
            " ",
            "",
            "a" * 256,
            "x\u2028y",
        ):
            with self.assertRaises(UserError, msg=repr(name)):
                check_file_name(name, 255)

    def test_message_type_comes_from_the_allow_list_the_mime_type_is_in(self) -> None:
        config = UploadsConfig()
        self.assertEqual(message_type_for("image/png", config), "image")
        self.assertEqual(message_type_for("video/mp4", config), "video")
        self.assertEqual(message_type_for("audio/ogg", config), "audio")
        self.assertEqual(message_type_for("application/pdf", config), "file")
        self.assertIsNone(message_type_for("text/html", config))
        self.assertIsNone(message_type_for("application/x-msdownload", config))
        self.assertEqual(normalise_type(" Image/PNG; charset=binary"), "image/png")
