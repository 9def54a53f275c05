"""The SMS text of an email: its text/plain part, else its HTML as plain text."""

from __future__ import annotations

import email
import re
from email import policy
from email.message import EmailMessage
from html.parser import HTMLParser


class NoText(ValueError):
    """An email with nothing to send as an SMS."""


class _Text(HTMLParser):
    """HTML to text: tags dropped, blocks on lines of their own, scripts and styles out."""

    _BLOCKS = {"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "table"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._hidden = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style", "head"):
            self._hidden += 1
        elif tag in self._BLOCKS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style", "head"):
            self._hidden = max(self._hidden - 1, 0)
        elif tag in self._BLOCKS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._hidden:
            self.parts.append(data)


def html_to_text(html: str) -> str:
    parser = _Text()
    parser.feed(html)
    parser.close()
    lines = (re.sub(r"[ \t\r\f\v]+", " ", line).strip()
             for line in "".join(parser.parts).split("\n"))
    return re.sub(r"\n{2,}", "\n", "\n".join(lines)).strip()  # SMS characters count


def sms_text(raw: bytes, with_subject: bool = False) -> str:
    """The text to send: the text/plain part (HTML only when it is the only text),
    trimmed of surrounding blank space; `Subject: ` before it when asked."""
    message = email.message_from_bytes(raw, policy=policy.default)
    assert isinstance(message, EmailMessage)
    text = ""
    plain = message.get_body(preferencelist=("plain",))
    if plain is not None:
        text = str(plain.get_content()).strip()
    else:
        html = message.get_body(preferencelist=("html",))
        if html is not None:
            text = html_to_text(str(html.get_content()))
    subject = str(message.get("Subject", "") or "").strip()
    if with_subject and subject:
        text = f"{subject}: {text}" if text else subject
    if not text:
        raise NoText("the email has no text to send: write it in the body (text/plain)")
    return text
