"""``moderation.blocklist`` matching and masking, link detection, and the configuration's refusals (no I/O)."""

from __future__ import annotations

from twisted.trial import unittest

from umoc.config import BlocklistConfig, ConfigError, parse_config
from umoc.domain.moderation import BLOCKED, check_text, has_link
from umoc.errors import UserError


class BlocklistTests(unittest.SynchronousTestCase):
    def test_words_match_whole_words_case_insensitively_and_regexes_anywhere(self) -> None:
        blocklist = BlocklistConfig(words=("spam", "two words"), regexes=("b[a4]d+",))
        for text in ("SPAM here", "say Two Words now", "so b4ddd", "xxbadxx"):
            with self.assertRaises(UserError) as caught:
                check_text(blocklist, text)
            self.assertEqual((caught.exception.message, caught.exception.code), (BLOCKED, "forbidden"))
        for text in ("spammer", "two  words", "fine"):
            self.assertEqual(check_text(blocklist, text), text)

    def test_mask_replaces_each_match_with_as_many_stars(self) -> None:
        blocklist = BlocklistConfig(words=("spam",), regexes=("[0-9]{3}-[0-9]{4}",), action="mask")
        self.assertEqual(check_text(blocklist, "Spam, call 555-1234 spam"), "****, call ******** ****")

    def test_an_empty_blocklist_returns_the_text_itself(self) -> None:
        text = "anything at all"
        self.assertIs(check_text(BlocklistConfig(), text), text)

    def test_links(self) -> None:
        for text in ("see https://x.test/a", "www.example", "visit example.com today", "HTTP://A.B"):
            self.assertTrue(has_link(text), text)
        for text in ("no link here", "e.g. this", "3.14 is pi"):
            self.assertFalse(has_link(text), text)


class ModerationConfigTests(unittest.SynchronousTestCase):
    def test_bad_values_stop_start_up_naming_the_key(self) -> None:
        with self.assertRaises(ConfigError) as caught:
            parse_config(
                {
                    "moderation": {
                        "blocklist": {"words": [" "], "regexes": ["(", "a*"], "action": "shout"},
                    }
                }
            )
        problems = "\n".join(caught.exception.problems)
        for key in ("blocklist.action", "blocklist.words[0]", "blocklist.regexes[0]", "blocklist.regexes[1]"):
            self.assertIn(f"moderation.{key}'", problems)

    def test_a_before_message_hook_needs_a_url_a_secret_and_a_known_failure_action(self) -> None:
        with self.assertRaises(ConfigError) as caught:
            parse_config({"hooks": {"before_message": {"url": "ftp://x", "secret": "short", "on_failure": "maybe"}}})
        problems = "\n".join(caught.exception.problems)
        for key in ("url", "secret", "on_failure"):
            self.assertIn(f"hooks.before_message.{key}'", problems)
        self.assertEqual(parse_config({}).hooks.before_message.url, "")
