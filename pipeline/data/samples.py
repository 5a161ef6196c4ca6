"""What a dataset is: labelled samples (a clip, or one person's action in a video of several) and the class
names. Every loader returns a Dataset (datasets.py: folders, lists, split files; tracks.py: per-person rows)."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Sample:
    path: str
    label: str
    person: object = None  # tracks.PersonSpan: one person's action in a video of several (per-person rows)

    @property
    def key(self) -> str:
        """What tells samples apart: the path, and for a person's action also its span (tracks.PersonSpan)."""
        return self.path if self.person is None else f"{self.path}#{self.person.ident}"


@dataclass
class Dataset:
    samples: list[Sample]
    classes: list[str]
    source: str = ""
    split_of: dict = field(default_factory=dict)  # path -> split name, when the source had one

    def __len__(self) -> int:
        return len(self.samples)

    def targets(self, classes: list[str] | None = None) -> list[int]:
        index = {c: i for i, c in enumerate(classes or self.classes)}
        return [index[s.label] for s in self.samples]
