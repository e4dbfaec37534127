"""A finding: one thing an audit proves wrong, naming the file or package at fault."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, order=True)
class Finding:
    check: str
    subject: str
    detail: str

    def line(self) -> str:
        return f"{self.check}: {self.subject}: {self.detail}" if self.detail else f"{self.check}: {self.subject}"

    def as_dict(self) -> dict[str, Any]:
        return {"check": self.check, "subject": self.subject, "detail": self.detail}
