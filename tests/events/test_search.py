"""``search_messages`` through the real server with a stock python-socketio client, on both databases."""

from __future__ import annotations

from typing import Any

from tests.support.chat import Person
from tests.support.databases import for_each_backend
from tests.support.deferreds import inline
from tests.support.inprocess import InProcessChatCase
from umoc.domain.search import encode_cursor

HISTORY_FIELDS = {
    "message_id",
    "sender_id",
    "sender_username",
    "content",
    "type",
    "timestamp",
    "is_read",
    "display_name",
    "avatar_url",
    "reply_to",
    "mentions",
    "edited_at",
    "reactions",
}


class SearchEventTestsMixin:
    async def search(self, person: Person, **payload: Any) -> dict[str, Any]:
        return await person.call("search_messages", **payload)

    @inline
    async def test_search_finds_messages_in_the_users_chats_with_history_fields_and_a_safe_snippet(self) -> None:
        alice, bob, carol = await self.person("alice"), await self.person("bob"), await self.person("carol")
        await self.befriend(alice, bob)
        await self.befriend(bob, carol)
        sent = await alice.call("send_message", recipient_id=bob.id, content="<b>Pizza</b> & salad tonight?")
        await carol.call("send_message", recipient_id=bob.id, content="pizza is for bob and carol only")
        group = await bob.call("create_group", name="pizza club", member_ids=[alice.id, carol.id])
        in_group = await carol.call("send_message", recipient_id=group["id"], is_group=True, content="more PIZZA")
        answer = await self.search(alice, query="pizza")
        self.assertEqual(await alice.client.expect("search_results"), answer)
        self.assertEqual((answer["query"], answer["next_cursor"]), ("pizza", None))
        results = answer["results"]
        self.assertEqual([r["message_id"] for r in results], [in_group["message_id"], sent["message_id"]])
        first, second = results
        self.assertEqual(set(first), HISTORY_FIELDS | {"chat_id", "is_group", "snippet"})
        self.assertEqual(set(second), HISTORY_FIELDS | {"chat_id", "is_group", "snippet", "delivered_at"})
        self.assertEqual((first["chat_id"], first["is_group"], first["sender_id"]), (group["id"], True, carol.id))
        self.assertEqual((second["chat_id"], second["is_group"]), (bob.id, False))
        self.assertEqual(second["content"], "<b>Pizza</b> & salad tonight?")
        self.assertEqual(second["snippet"], "&lt;b&gt;<mark>Pizza</mark>&lt;/b&gt; &amp; salad tonight?")
        self.assertEqual(first["snippet"], "more <mark>PIZZA</mark>")
        # bob's view of the same direct message names the chat by alice's id.
        for_bob = await self.search(bob, query="salad")
        self.assertEqual([(r["chat_id"], r["is_group"]) for r in for_bob["results"]], [(alice.id, False)])

    @inline
    async def test_one_chat_paging_and_the_cursor(self) -> None:
        alice, bob = await self.person("alice"), await self.person("bob")
        await self.befriend(alice, bob)
        sent = [await alice.call("send_message", recipient_id=bob.id, content=f"taco {i}") for i in range(5)]
        group = await alice.call("create_group", name="g", member_ids=[bob.id])
        await alice.call("send_message", recipient_id=group["id"], is_group=True, content="taco party")
        seen, cursor = [], None
        while True:
            page = await self.search(
                bob, query="TACO", chat_id=alice.id, is_group=False, limit=2, **({"cursor": cursor} if cursor else {})
            )
            seen += [r["message_id"] for r in page["results"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
            self.assertIsInstance(cursor, str)
        self.assertEqual(seen, [m["message_id"] for m in reversed(sent)])
        only_group = await self.search(bob, query="taco", chat_id=group["id"], is_group=True)
        self.assertEqual([r["content"] for r in only_group["results"]], ["taco party"])
        everywhere = await self.search(bob, query="taco", limit=50)
        self.assertEqual(len(everywhere["results"]), 6)

    @inline
    async def test_bad_input_is_refused_with_an_error(self) -> None:
        alice, bob, carol = await self.person("alice"), await self.person("bob"), await self.person("carol")
        await self.befriend(alice, bob)
        await self.befriend(bob, carol)
        group = await bob.call("create_group", name="without alice", member_ids=[carol.id])
        await alice.call("send_message", recipient_id=bob.id, content="anything")
        cases = [
            ({}, "Missing 'query'"),
            ({"query": 5}, "Invalid 'query': expected a string"),
            ({"query": ""}, "Invalid 'query': expected 1 to 200 characters"),
            ({"query": "x" * 201}, "Invalid 'query': expected 1 to 200 characters"),
            ({"query": '  "*" -- ( ) : ^ '}, "Invalid 'query': no words to search for (letters or digits)"),
            ({"query": " ".join(f"w{i}" for i in range(17))}, "Invalid 'query': at most 16 different words"),
            ({"query": "a", "limit": 0}, "Invalid 'limit': expected an integer from 1 to 50"),
            ({"query": "a", "limit": 51}, "Invalid 'limit': expected an integer from 1 to 50"),
            ({"query": "a", "limit": "5"}, "Invalid 'limit': expected an integer"),
            ({"query": "a", "limit": True}, "Invalid 'limit': expected an integer"),
            ({"query": "a", "chat_id": "1"}, "Invalid 'chat_id': expected an integer"),
            ({"query": "a", "chat_id": bob.id, "is_group": "no"}, "Invalid 'is_group': expected true or false"),
            ({"query": "a", "cursor": "nope"}, "Invalid 'cursor': not a cursor from search_results"),
            ({"query": "a", "cursor": 5}, "Invalid 'cursor': not a cursor from search_results"),
            ({"query": "a", "cursor": "x" * 65}, "Invalid 'cursor': not a cursor from search_results"),
            ({"query": "a", "cursor": encode_cursor(5) + "A"}, "Invalid 'cursor': not a cursor from search_results"),
            ({"query": "a", "chat_id": group["id"], "is_group": True}, "Unknown chat"),
            ({"query": "a", "chat_id": group["id"] + 100, "is_group": True}, "Unknown chat"),
            ({"query": "a", "chat_id": carol.id}, "Unknown chat"),
        ]
        for payload, message in cases:
            answer = await self.search(alice, **payload)
            code = "not_found" if message == "Unknown chat" else "invalid_argument"
            self.assertEqual(answer, {"error": message, "code": code}, payload)
            self.assertEqual(await alice.client.expect("error"), {"message": message, "code": code})
        # Query syntax is only words: no error, and it matches the words.
        for query in ('"anything', "anything*", "NEAR(anything)", "-anything", "anything OR x", "^anything:"):
            answer = await self.search(alice, query=query)
            self.assertNotIn("error", answer, query)
        self.assertEqual(len((await self.search(alice, query='"anything*')).get("results", [])), 1)
        self.assertEqual((await self.search(alice, query="anything OR x"))["results"], [])


for_each_backend(SearchEventTestsMixin, InProcessChatCase, globals())
