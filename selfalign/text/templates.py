"""The prompt texts each stage renders. Written for selfalign; bump TEMPLATE_VERSION when they change."""

from __future__ import annotations

import random

from selfalign.assets import Exemplar, Principle, QuestionType

PRINCIPLE_HEADER = (
    "Below is a conversation between a curious User and {persona}, an AI assistant. Before each reply, "
    "{persona} writes internal thoughts that say which of its principles apply to the request and how, "
    "then writes the reply itself. {persona} follows these principles:\n\n{principles}\n"
)


def principle_turn_stops(persona: str) -> list[str]:
    """Where a principle completion must end: the next user turn or a new round of thoughts."""
    return ["\nUser:", "\n\nUser", f"\n{persona} (internal thoughts)"]


def render_principles(principles: list[Principle]) -> str:
    return "\n".join(f"{p.id} ({p.name}). {p.text}" for p in principles)


def principle_prefix(principles: list[Principle], exemplars: list[Exemplar], persona: str) -> str:
    """The part of the prompt shared by every query: header, principles, worked exemplars."""
    parts = [PRINCIPLE_HEADER.format(persona=persona, principles=render_principles(principles))]
    for ex in exemplars:
        parts.append(f"User: {ex.user.strip()}\n\n{persona} (internal thoughts): {ex.thoughts.strip()}\n\n"
                     f"{persona}: {ex.answer.strip()}\n")
    return "\n".join(parts) + "\n"


def principle_prompt(prefix: str, query: str, persona: str) -> str:
    return f"{prefix}User: {query.strip()}\n\n{persona} (internal thoughts):"


VERBOSE_HEADER = (
    "Below is a conversation between a User and {persona}, an AI assistant that gives detailed, "
    "comprehensive and well-structured answers. {persona} explains the background, covers every part of "
    "the question, gives concrete examples, and organises longer answers with short paragraphs or "
    "numbered points. {persona} is honest about what it does not know.\n\n"
)


def refine_prompt(query: str, persona: str) -> str:
    return VERBOSE_HEADER.format(persona=persona) + f"User: {query.strip()}\n\n{persona}:"


SELF_INSTRUCT_HEADER = (
    "Come up with a series of diverse tasks and questions that a person might ask an AI assistant. "
    "Each one must be answerable in text alone, and different from the others in topic and style.\n\n"
)


def self_instruct_prompt(examples: list[str]) -> str:
    lines = [f"{i}. {' '.join(t.split())}" for i, t in enumerate(examples, 1)]
    return SELF_INSTRUCT_HEADER + "\n".join(lines) + f"\n{len(examples) + 1}."


def topics_prompt(qtype: QuestionType, known: list[str], rng: random.Random) -> str:
    desc = f" ({qtype.description})" if qtype.description else ""
    shown = rng.sample(known, min(len(known), 3)) or [e["topic"] for e in qtype.examples[:3] if e.get("topic")]
    head = (f"List 10 different topics for questions of the type \"{qtype.name}\"{desc}. "
            "Each topic is a short noun phrase.\n\n")
    lines = [f"{i}. {t}" for i, t in enumerate(shown, 1)]
    return head + "\n".join(lines) + f"\n{len(shown) + 1}."


def questions_prompt(qtype: QuestionType, topic: str, rng: random.Random) -> str:
    demos = rng.sample(qtype.examples, min(len(qtype.examples), 3))
    head = (f"Write questions a user might ask an AI assistant. Question type: {qtype.name}"
            f"{' (' + qtype.description + ')' if qtype.description else ''}.\n\n")
    body = "".join(f"Topic: {d['topic']}\nQuestion: {d['question']}\n\n" for d in demos)
    return head + body + f"Topic: {topic}\nQuestion:"
