"""Sending: ``message/send`` (any msgtype, long texts in parts) and template card updates."""
from __future__ import annotations

from typing import Any, Iterable

from ..wecom.limits import MSGTYPES
from ..wecom.replies import split_text
from .calls import APIClient, agent_id_value

__all__ = ["MessagesMixin"]


def _join_ids(ids: str | int | Iterable[str | int] | None) -> str | None:
    if ids is None or isinstance(ids, (str, int)):
        return None if ids in (None, "") else str(ids)
    joined = "|".join(str(i) for i in ids)
    return joined or None


class MessagesMixin(APIClient):
    """The message APIs of :class:`~wechatbot.api.WeComAPI`."""

    def send_message(self, msg: dict) -> dict:
        """``message/send`` with a complete message body; fills ``agentid`` if absent."""
        body = dict(msg)
        if "agentid" not in body and self.agent_id not in (None, ""):
            body["agentid"] = agent_id_value(self.agent_id)  # type: ignore[arg-type]
        return self.post("message/send", body)

    def send(
        self,
        msgtype: str,
        body: dict,
        touser: str | Iterable[str] | None = None,
        toparty: str | int | Iterable[str | int] | None = None,
        totag: str | int | Iterable[str | int] | None = None,
        safe: int = 0,
        enable_duplicate_check: bool = False,
        duplicate_check_interval: int | None = None,
        enable_id_trans: bool = False,
    ) -> dict:
        """Send one message of ``msgtype`` whose payload is ``body``.

        ``send("text", {"content": "hi"}, touser=["a", "b"])``. Lists of
        recipients are joined with ``|``; ``"@all"`` reaches everyone in the
        app's visible range. ``safe=1`` marks it confidential.
        """
        if msgtype not in MSGTYPES:
            raise ValueError(f"unknown msgtype {msgtype!r} (known: {', '.join(MSGTYPES)})")
        recipients = {
            name: joined for name, joined in
            (("touser", _join_ids(touser)), ("toparty", _join_ids(toparty)), ("totag", _join_ids(totag)))
            if joined
        }
        if not recipients:
            raise ValueError("a message needs touser, toparty or totag")
        msg: dict[str, Any] = {**recipients, "msgtype": msgtype, msgtype: body}
        if safe:
            msg["safe"] = safe
        if enable_id_trans:
            msg["enable_id_trans"] = 1
        if enable_duplicate_check:
            msg["enable_duplicate_check"] = 1
            if duplicate_check_interval is not None:
                msg["duplicate_check_interval"] = duplicate_check_interval
        return self.send_message(msg)

    def send_text(self, touser: str | Iterable[str], content: str, **options: Any) -> list[dict]:
        """Send a text; one longer than 2048 UTF-8 bytes goes as several messages.

        The parts split on character boundaries, after a newline where there is
        one, and nothing is dropped. Returns one API answer per part.
        ``options`` are those of :meth:`send`.
        """
        return [self.send("text", {"content": part}, touser=touser, **options) for part in split_text(content)]

    def update_template_card(self, body: dict) -> dict:
        """``message/update_template_card``: change a card a user interacted with.

        ``body`` carries ``response_code`` and either ``button`` or a new
        ``template_card`` (plus ``userids``/``atall`` …); ``agentid`` is filled in.
        """
        body = dict(body)
        if "agentid" not in body and self.agent_id not in (None, ""):
            body["agentid"] = agent_id_value(self.agent_id)  # type: ignore[arg-type]
        return self.post("message/update_template_card", body)
