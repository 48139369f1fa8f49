"""The group robot channel (群机器人 / 消息推送, ``type = group_robot``): XML both ways, the webhook for the rest.

A passive answer is a text (with ``MentionedList``, at most 2048 bytes) or a
markdown (at most 4096 bytes), to any message or event (D:99399). Anything
longer or later goes through the callback's ``WebhookUrl`` (``webhook/send``):
a text in parts of 2048 bytes, a markdown in parts of 4096.
"""
from __future__ import annotations


from ..wecom.bot_replies import GROUP_MARKDOWN_LIMIT, GROUP_TEXT_LIMIT, GroupTextReply, group_markdown_xml
from ..wecom.callbacks import parse_or_unknown
from ..wecom.group_robot import parse_group_robot
from ..wecom.messages import Message
from ..wecom.replies import MarkdownReply, Reply, ReplyFormError, TextReply, split_text
from .base import Channel


def _size(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


class GroupRobotChannel(Channel):
    """``[wecom] type = group_robot``."""

    type = "group_robot"
    envelope = None
    push_via = "webhook"

    def parse(self, plaintext: str) -> Message:
        return parse_or_unknown(plaintext, parse_group_robot)

    def dump(self, message: Message) -> str:
        import xmltodict  # only deferred jobs need it: kept out of the workers' memory until then

        return xmltodict.unparse({"xml": message.raw}, full_document=False)

    def can_answer_passively(self, reply: Reply, message: Message) -> bool:
        if isinstance(reply, GroupTextReply):
            return True
        if isinstance(reply, TextReply):
            return bool(reply.content) and _size(reply.content) <= GROUP_TEXT_LIMIT
        if isinstance(reply, MarkdownReply):
            return bool(reply.content) and _size(reply.content) <= GROUP_MARKDOWN_LIMIT
        return False

    def render_passive(self, reply: Reply, message: Message, now: int) -> str:
        if isinstance(reply, GroupTextReply):
            return reply.to_group_xml()
        if isinstance(reply, TextReply):
            return GroupTextReply(reply.content).to_group_xml()
        if isinstance(reply, MarkdownReply):
            return group_markdown_xml(reply.content)
        raise ReplyFormError(f"a group robot cannot answer with a {type(reply).__name__}")

    @staticmethod
    def push_bodies(reply: Reply) -> list[dict]:
        """The ``webhook/send`` bodies for ``reply``: long texts in parts, never cut."""
        if isinstance(reply, GroupTextReply):
            return [reply.to_webhook_body()]
        if isinstance(reply, TextReply):
            return [{"msgtype": "text", "text": {"content": part}} for part in split_text(reply.content, GROUP_TEXT_LIMIT)]
        if isinstance(reply, MarkdownReply):
            return [{"msgtype": "markdown", "markdown": {"content": part}}
                    for part in split_text(reply.content, GROUP_MARKDOWN_LIMIT)]
        try:
            return [reply.to_send_body()]  # news, image … share message/send's shape
        except ReplyFormError:
            raise ReplyFormError(f"a group robot cannot send a {type(reply).__name__}") from None
