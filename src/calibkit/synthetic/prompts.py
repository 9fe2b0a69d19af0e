"""Prompts of paper 000: label definitions + 3 examples per label (appendix C), the scenario
prompts that ask the LLM to act as the classifier (appendix A) and the relabel prompt.

Generation (stage 1). The system message is the task description of appendix C (Table 7): each
class with its definition and three example utterances. The user message shows one text ``x_i``
of a target bin with the bin's mean predicted probability ``conf`` (in percent, of class 1) and
asks for 3 short utterances at a *revised* probability (appendix A, ``gen_prompt``)::

    low/under   revised = 45 if conf + diff >= 50  else conf + diff
    low/over    revised = 5  if conf - diff <= 0   else conf - diff
    high/under  revised = 95 if conf + diff >= 100 else conf + diff
    high/over   revised = 55 if conf - diff <= 50  else conf - diff

where ``diff = |Acc(B_m) - Conf(B_m)|`` in percent. In the binary view ``Acc(B_m)`` is the
fraction of positives, so ``conf -/+ diff`` *is* the bin's observed frequency: the LLM is asked for
texts whose probability matches what the bin should have predicted. The bounds keep the revised
probability on the same side of 0.5 as the bin (and away from 0 and 1), so the generated texts keep
the source text's class, as the paper's code comment says. Following footnote 3 and the code, the
bin's mean confidence stands for every item of the bin (section 3.2's ``m / n_bins +- alpha``
uses the bin index instead; the code is what produced the results).

Two deliberate normalisations of the printed code: the example text is quoted before "which
belongs" (as in Tables 3 and 8: "An example x_i which belongs ..."), and every scenario ends in
"(no explanation):" (the printed low/under branch lacks it, apparently a typo: the other three
and Table 8 are identical otherwise).

Relabel (stage 2). The same appendix C description as a :class:`~calibkit.scoring.PromptTemplate`
asking for one class name; :func:`relabel_template` builds it for
:class:`~calibkit.scoring.ClassificationScorer`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from calibkit.tasks import DataSource, TaskSpec

if TYPE_CHECKING:
    from calibkit.scoring.backends.base import ChatMessage
    from calibkit.scoring.prompts import PromptTemplate

__all__ = [
    "COMPLETION_CUE",
    "SCENARIOS",
    "TASKS",
    "TaskSpec",
    "generation_completion",
    "generation_messages",
    "generation_prompt",
    "get_task",
    "relabel_template",
    "revised_confidence",
    "to_percent",
]

#: the four cells of Table 1
SCENARIOS = ("low/over", "low/under", "high/over", "high/under")

GENERATION_TEMPLATE = (
    'An example: "{text}" which belongs {conf0}% to {label0} and {conf1}% to {label1} '
    "(based on a classifier's categorization). Now I ask you to act as that classifier and based "
    "on this example, generate a diverse set of {n} short utterances where each utterance belongs "
    "{rev0}% to {label0} and {rev1}% to {label1} (no explanation):"
)


# Appendix C, Table 7 (TC = twitter_complaints, SUBJ = subj, B77 = banking77 age_limit vs
# atm_support, SE = SentEval CR = cr). Classes are in the datasets' label_id order; every task
# reads its built-in dataset (banking77: only the two intents).
TASKS: dict[str, TaskSpec] = {
    "twitter_complaints": TaskSpec(
        "twitter_complaints",
        ("not_complaint", "complaint"),
        {
            "complaint": "about customer inquiries on a state of affairs, product, organization "
            "or event to express a negative mismatch between reality and expectations",
            "not_complaint": "the opposite of complaint mentioned above, about customer regular "
            "or normal inquiries on a state of affairs, product, organization or event without "
            "any expression related to a negative mismatch between reality and expectations",
        },
        {
            "complaint": (
                "Dear @nvidia, I don't think I should have to roll back to driver v270.61 to make "
                "my games work, and my desktop not glitch out.",
                "@FC_Help hi m order is 913181 did you revise the money? if you did.. how about "
                "the shipping ?",
                "@FC_Help Will you be getting the wendy cotton v neck dress in pavlova back in "
                "stock on the site?",
            ),
            "not_complaint": (
                "@FC_Help How can I get a hold of you so we can discuss the problem I am having "
                "with my coat?",
                "@FC_Help I need to check my order.",
                '@FC_Help looking for "bright carol" or "stained glass" dress. do you have these '
                "in stock anymore?",
            ),
        },
        data=DataSource(dataset="twitter_complaints"),
    ),
    "subj": TaskSpec(
        "subj",
        ("objective", "subjective"),
        {
            "objective": "assigned to text that presents factual information, descriptions, or "
            "statements without personal opinions, emotions, or bias. It focuses on delivering "
            "facts or information that is independent of the writer's personal feelings or "
            "beliefs",
            "subjective": "applied to text that expresses personal opinions, feelings, beliefs, "
            "or thoughts. It often includes evaluative language, personal experiences, or "
            "interpretations, reflecting the writer's personal stance or emotional reaction",
        },
        {
            "objective": (
                "nicklas passes out , and the next day when he returns to school he notices that "
                "nobody seems to notice him.",
                "when reuben buys a black-market cure for his unusual chest complaint, jenny is "
                "forced to make a terrible sacrifice.",
                "raj has always had a unrequited childhood crush on a friend named tina, but "
                "tina's best friend pooja has always had a crush on raj.",
            ),
            "subjective": (
                "for its seriousness, high literary aspirations and stunning acting, the film can "
                "only be applauded.",
                "an inelegant combination of two unrelated shorts that falls far short of the "
                "director's previous work in terms of both thematic content and narrative "
                "strength.",
                "what's needed so badly but what is virtually absent here is either a saving dark "
                "humor or the feel of poetic tragedy.",
            ),
        },
        data=DataSource(dataset="subj"),
    ),
    "banking77": TaskSpec(
        "banking77",
        ("age_limit", "atm_support"),
        {
            "age_limit": "about customer inquiries on age-related restrictions for opening a "
            "bank account",
            "atm_support": "about users asking how to use an ATM, where to find one, or any other "
            "clarifications about a transaction at an ATM",
        },
        {
            "age_limit": (
                "Can I get an account for my son?",
                "Can my teenager have an account?",
                "How young can I be to open my own account?",
            ),
            "atm_support": (
                "Is the closest ATM to me within 2 miles?",
                "Are there only certain ATM machines where I can use this card?",
                "Do you know the closest ATM?",
            ),
        },
        data=DataSource(dataset="banking77", unknown_labels="drop"),
    ),
    "cr": TaskSpec(
        "cr",
        ("negative", "positive"),
        {
            "negative": "assigned to content that expresses negative feelings, emotions, or "
            "attitudes. Examples include statements of dissatisfaction, sadness, anger, or "
            "criticism",
            "positive": "applied to content that expresses positive feelings, emotions, or "
            "attitudes. Examples include statements of happiness, satisfaction, praise, or "
            "optimism",
        },
        {
            "negative": (
                "even with newborn diapers it filled way too fast.",
                "bluetooth does not work on this phone.",
                "also, some other mp3 players such as the nitrus allow you to play wma (windows "
                "media audio) files, whereas the ipod does not.",
            ),
            "positive": (
                "4 megapixels is enough for anybody and the photo quality is awesome.",
                "an extra gig of room, fm radio, voice recorder, pim applications with sync to "
                "outlook.",
                "all the buttons & necessary lil' gadgets are on the sides of the player which is "
                "nice for when you are holding it in the palm of your hand.",
            ),
        },
        data=DataSource(dataset="cr"),
    ),
}
_TASK_ALIASES = {"tc": "twitter_complaints", "b77": "banking77", "se": "cr", "sst": "cr"}


def get_task(name: str) -> TaskSpec:
    """The appendix C task spec of a dataset: ``twitter_complaints`` (``tc``), ``subj``,
    ``banking77`` (``b77``) or ``cr`` (``se``)."""
    key = _TASK_ALIASES.get(name.lower(), name.lower())
    if key not in TASKS:
        raise ValueError(
            f"no appendix C prompt for {name!r}; known: {sorted(TASKS)} "
            "(build one with TaskSpec.from_data)"
        )
    return TASKS[key]


def to_percent(p: float, name: str = "probability") -> int:
    """A probability in ``[0, 1]`` as an integer percent (rounded half to even)."""
    if not np.isfinite(p) or not 0.0 <= p <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {p}")
    return round(100.0 * float(p))


def _parse_scenario(scenario: str) -> tuple[bool, bool]:
    s = scenario.lower()
    low, high = "low" in s, "high" in s
    over, under = "over" in s, "under" in s
    if low == high or over == under:
        raise ValueError(
            f"scenario must name one of low/high and one of over/under (one of {SCENARIOS}), "
            f"got {scenario!r}"
        )
    return low, over


def revised_confidence(conf: int, diff: int, scenario: str) -> int:
    """Target probability (percent of class 1) for the generated texts, appendix A.

    Parameters
    ----------
    conf : int
        Bin mean predicted probability of class 1, in percent (0..100).
    diff : int
        ``|Acc(B_m) - Conf(B_m)|`` in percent (>= 0).
    scenario : str
        Table 1 cell (``"low/over"`` ...).

    Returns
    -------
    int
        ``conf + diff`` (under-confident) or ``conf - diff`` (over-confident), bounded at 45 / 5
        (low probability) and 95 / 55 (high probability) exactly as the paper's ``gen_prompt``.
    """
    for name, v in (("conf", conf), ("diff", diff)):
        if isinstance(v, bool) or not isinstance(v, int | np.integer):
            raise ValueError(f"{name} must be an integer percent, got {v!r}")
    if not 0 <= conf <= 100:
        raise ValueError(f"conf must be in [0, 100], got {conf}")
    if not 0 <= diff <= 100:
        raise ValueError(f"diff must be in [0, 100], got {diff}")
    low, over = _parse_scenario(scenario)
    if low and not over:
        return 45 if conf + diff >= 50 else conf + diff
    if low and over:
        return 5 if conf - diff <= 0 else conf - diff
    if not over:
        return 95 if conf + diff >= 100 else conf + diff
    return 55 if conf - diff <= 50 else conf - diff


def generation_prompt(
    text: str, conf: int, revised: int, classes: Sequence[str], *, n_utterances: int = 3
) -> str:
    """The user message of stage 1 (appendix A): show ``text`` at ``conf`` % of ``classes[1]`` and
    ask for ``n_utterances`` short utterances at ``revised`` %."""
    if len(classes) != 2:
        raise ValueError(
            f"the paper's generation prompt is binary; got {len(classes)} classes {list(classes)}"
        )
    if n_utterances < 1:
        raise ValueError(f"n_utterances must be >= 1, got {n_utterances}")
    for name, v in (("conf", conf), ("revised", revised)):
        if not 0 <= v <= 100:
            raise ValueError(f"{name} must be in [0, 100], got {v}")
    return GENERATION_TEMPLATE.format(
        text=str(text).strip(),
        conf0=100 - conf,
        conf1=conf,
        label0=classes[0],
        label1=classes[1],
        rev0=100 - revised,
        rev1=revised,
        n=n_utterances,
    )


def generation_messages(
    task: TaskSpec,
    text: str,
    confidence: float,
    gap: float,
    scenario: str,
    *,
    n_utterances: int = 3,
) -> list[ChatMessage]:
    """Chat messages of stage 1 for one target text.

    Parameters
    ----------
    task : TaskSpec
        Classes and appendix C descriptions/examples (system message).
    text : str
        ``x_i``, an item of a target bin.
    confidence : float
        The bin's mean predicted probability of class 1 (``Conf(B_m)``), a probability.
    gap : float
        ``Conf(B_m) - Acc(B_m)`` (its absolute value is ``diff``).
    scenario : str
        Table 1 cell of the bin.
    """
    conf = to_percent(confidence, "confidence")
    diff = to_percent(abs(gap), "|gap|")
    rev = revised_confidence(conf, diff, scenario)
    return [
        {"role": "system", "content": task.system_prompt()},
        {
            "role": "user",
            "content": generation_prompt(text, conf, rev, task.classes, n_utterances=n_utterances),
        },
    ]


#: what a completion-style generation prompt ends with (and the model's answer is read after):
#: the bullet-and-quote format of the appendix C examples, so that a base model continues the
#: list of example utterances instead of writing about the task
COMPLETION_CUE = '\n- "'


def generation_completion(messages: Sequence[ChatMessage]) -> str:
    """Stage 1 as one plain-text prompt, for base models without a chat template (Gemma 3 270M
    base): the system and user messages separated by a blank line, then
    :data:`COMPLETION_CUE`, so the continuation is the first utterance in the examples' format.

    Parameters
    ----------
    messages : the chat messages of :func:`generation_messages`.
    """
    parts = []
    for m in messages:
        content = str(m.get("content", "")).strip()
        if not content:
            raise ValueError(f"a generation message has no content: {m!r}")
        parts.append(content)
    if not parts:
        raise ValueError("no generation messages to render")
    return "\n\n".join(parts) + COMPLETION_CUE


def relabel_template(task: TaskSpec) -> PromptTemplate:
    """Stage 2 prompt: the appendix C description, then "Text: ..." and "Answer with only one
    of: <classes>." (a :class:`~calibkit.scoring.PromptTemplate`)."""
    return task.template()
