"""Deterministic English test documents with the layout that must survive translation."""

from __future__ import annotations

import random

SUBJECTS = [
    "The engineer",
    "A small team",
    "The old library",
    "Our customer",
    "The city council",
    "A young doctor",
    "The translator",
    "My neighbour",
    "The committee",
    "A local farmer",
    "The teacher",
    "The museum",
    "A journalist",
    "The company",
    "The river",
]
VERBS = [
    "opened",
    "described",
    "reviewed",
    "planned",
    "repaired",
    "visited",
    "explained",
    "finished",
    "published",
    "changed",
    "protected",
    "measured",
    "discovered",
    "sold",
]
OBJECTS = [
    "a new bridge",
    "the annual report",
    "the garden behind the school",
    "three old books",
    "the main road",
    "a difficult problem",
    "the summer festival",
    "the water supply",
    "a short film",
    "the evening train",
    "the price of bread",
    "an empty house",
    "the history of the region",
    "a simple plan",
    "the results of the survey",
]
TAILS = [
    "before the winter began",
    "with great care",
    "after a long discussion",
    "during the night",
    "for the first time",
    "without any help",
    "in the early morning",
    "despite the heavy rain",
    "as everyone expected",
    "last week",
    "near the station",
    "at the end of the month",
    "because it was necessary",
    "with the help of friends",
]


def sentence(rng: random.Random) -> str:
    s = f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(OBJECTS)} {rng.choice(TAILS)}"
    if rng.random() < 0.3:
        s += f", and {rng.choice(SUBJECTS).lower()} {rng.choice(VERBS)} {rng.choice(OBJECTS)}"
    return s + rng.choice([".", ".", ".", "!", "?"])


def document(words: int, seed: int = 7) -> str:
    """About ``words`` words: headings, prose paragraphs, bulleted and numbered lists with
    indentation, hard line breaks and runs of blank lines."""
    rng = random.Random(seed)
    parts: list[str] = []
    count = 0
    section = 0
    while count < words:
        kind = rng.random()
        if kind < 0.1:
            section += 1
            block = f"## Section {section}\n"
        elif kind < 0.25:
            items = [sentence(rng) for _ in range(rng.randint(2, 4))]
            marker = rng.choice(["- ", "* ", "1. "])
            indent = rng.choice(["", "  ", "    "])
            block = "".join(f"{indent}{marker}{item}\n" for item in items)
        elif kind < 0.35:
            block = "\n".join(sentence(rng) for _ in range(3)) + "\n"  # hard line breaks
        else:
            block = " ".join(sentence(rng) for _ in range(rng.randint(3, 8))) + "\n"
        parts.append(block)
        parts.append(rng.choice(["\n", "\n", "\n\n", "\n   \n"]))
        count += len(block.split())
    return "".join(parts)
