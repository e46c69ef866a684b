"""The questionnaire catalogue and its scoring: the single place for instrument facts.

Every figure here comes from ../shared/clinical.md (sections 1, 2 and 5). Item wording is
kept only where the licence allows it (PHQ-9 and GAD-7); LOINC codes only where verified.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from models.errors import NotFound, RuleViolation

Respondent = Literal["patient", "clinician"]
Direction = Literal["up", "down"]

# The flag an assessment carries when its safety item is positive (never a "safe" flag).
SELF_HARM_FLAG = "self_harm_item_positive"


@dataclass(frozen=True)
class Band:
    """A severity band: totals from ``low`` to ``high``, both inclusive."""

    code: str
    label: str
    low: int
    high: int

    def contains(self, total: int) -> bool:
        """Whether ``total`` falls in this band."""
        return self.low <= total <= self.high


@dataclass(frozen=True)
class AnswerOption:
    """One labelled answer of an item."""

    value: int
    label: str
    loinc_code: str | None = None


@dataclass(frozen=True)
class Item:
    """One scored item, numbered from 1 as on the paper form."""

    number: int
    low: int
    high: int
    text: str | None = None
    domain: str | None = None
    loinc_code: str | None = None


@dataclass(frozen=True)
class DifficultyItem:
    """PHQ-9's unscored item 10: stored, never added to the total."""

    number: int
    text: str
    options: tuple[AnswerOption, ...]
    loinc_code: str | None = None


@dataclass(frozen=True)
class Instrument:
    """A questionnaire: its items, ranges, scoring, bands and licence."""

    code: str
    name: str
    respondent: Respondent
    instrument_version: str
    scoring_version: str
    items: tuple[Item, ...]
    # Each group contributes max(its items) to the total; a one-item group is the item itself.
    scoring_groups: tuple[tuple[int, ...], ...]
    scoring: str
    bands: tuple[Band, ...]
    direction: Direction
    recall_period: str | None
    licence: str
    copyright: str | None = None
    instructions: str | None = None
    answer_options: tuple[AnswerOption, ...] = ()
    difficulty_item: DifficultyItem | None = None
    safety_item: int | None = None
    loinc_panel: str | None = None
    loinc_total: str | None = None

    @property
    def item_count(self) -> int:
        """How many scored items the form has."""
        return len(self.items)

    @property
    def total_min(self) -> int:
        """The lowest possible total."""
        return sum(min(self.items[n - 1].low for n in group) for group in self.scoring_groups)

    @property
    def total_max(self) -> int:
        """The highest possible total."""
        return sum(max(self.items[n - 1].high for n in group) for group in self.scoring_groups)


@dataclass(frozen=True)
class Score:
    """What the server computes from one completed form."""

    total: int
    band: Band | None
    flags: tuple[str, ...]
    # The safety item's number and answer when it is positive (>= 1), else None.
    safety_item: int | None
    safety_value: int | None


FREQUENCY_ANSWERS = (
    AnswerOption(0, "Not at all", "LA6568-5"),
    AnswerOption(1, "Several days", "LA6569-3"),
    AnswerOption(2, "More than half the days", "LA6570-1"),
    AnswerOption(3, "Nearly every day", "LA6571-9"),
)

PFIZER_COPYRIGHT = (
    "Copyright © Pfizer Inc. Developed by Drs. Robert L. Spitzer, Janet B.W. Williams, "
    "Kurt Kroenke and colleagues, with an educational grant from Pfizer Inc. "
    "No permission required to reproduce, translate, display or distribute."
)
PFIZER_LICENCE = "Free to use without permission; keep the copyright line."

_PHQ9_ITEMS = (
    ("Little interest or pleasure in doing things", "44250-9"),
    ("Feeling down, depressed, or hopeless", "44255-8"),
    ("Trouble falling or staying asleep, or sleeping too much", "44259-0"),
    ("Feeling tired or having little energy", "44254-1"),
    ("Poor appetite or overeating", "44251-7"),
    (
        "Feeling bad about yourself — or that you are a failure or have let yourself or "
        "your family down",
        "44258-2",
    ),
    (
        "Trouble concentrating on things, such as reading the newspaper or watching television",
        "44252-5",
    ),
    (
        "Moving or speaking so slowly that other people could have noticed? Or the opposite — "
        "being so fidgety or restless that you have been moving around a lot more than usual",
        "44253-3",
    ),
    ("Thoughts that you would be better off dead or of hurting yourself in some way", "44260-8"),
)

_GAD7_ITEMS = (
    "Feeling nervous, anxious or on edge",
    "Not being able to stop or control worrying",
    "Worrying too much about different things",
    "Trouble relaxing",
    "Being so restless that it is hard to sit still",
    "Becoming easily annoyed or irritable",
    "Feeling afraid as if something awful might happen",
)

# QIDS-SR16: domain labels only; the item wording is not reproduced (app use needs the
# authors' permission before a commercial release).
_QIDS_DOMAINS = (
    ((1, 2, 3, 4), "Sleep"),
    ((5,), "Sad mood"),
    ((6, 7, 8, 9), "Appetite or weight"),
    ((10,), "Concentration"),
    ((11,), "View of self"),
    ((12,), "Thoughts of death or suicide"),
    ((13,), "General interest"),
    ((14,), "Energy"),
    ((15, 16), "Psychomotor slowing or restlessness"),
)


def _singles(count: int) -> tuple[tuple[int, ...], ...]:
    return tuple((n,) for n in range(1, count + 1))


def _plain_items(count: int, high: int) -> tuple[Item, ...]:
    return tuple(Item(number=n, low=0, high=high) for n in range(1, count + 1))


PHQ9 = Instrument(
    code="phq9",
    name="PHQ-9",
    respondent="patient",
    instrument_version="1.0",
    scoring_version="1.0",
    instructions=(
        "Over the last 2 weeks, how often have you been bothered by any of the following problems?"
    ),
    items=tuple(
        Item(number=n, low=0, high=3, text=text, loinc_code=loinc)
        for n, (text, loinc) in enumerate(_PHQ9_ITEMS, start=1)
    ),
    scoring_groups=_singles(9),
    scoring="Sum of items 1 to 9 (0 to 27); item 10 (difficulty) is stored but never added.",
    answer_options=FREQUENCY_ANSWERS,
    difficulty_item=DifficultyItem(
        number=10,
        text=(
            "If you checked off any problems, how difficult have these problems made it for "
            "you to do your work, take care of things at home, or get along with other people?"
        ),
        options=(
            AnswerOption(0, "Not difficult at all"),
            AnswerOption(1, "Somewhat difficult"),
            AnswerOption(2, "Very difficult"),
            AnswerOption(3, "Extremely difficult"),
        ),
        loinc_code="69722-7",
    ),
    bands=(
        Band("minimal", "Minimal", 0, 4),
        Band("mild", "Mild", 5, 9),
        Band("moderate", "Moderate", 10, 14),
        Band("moderately_severe", "Moderately severe", 15, 19),
        Band("severe", "Severe", 20, 27),
    ),
    direction="down",
    recall_period="2 weeks",
    licence=PFIZER_LICENCE,
    copyright=PFIZER_COPYRIGHT,
    safety_item=9,
    loinc_panel="44249-1",
    loinc_total="44261-6",
)

GAD7 = Instrument(
    code="gad7",
    name="GAD-7",
    respondent="patient",
    instrument_version="1.0",
    scoring_version="1.0",
    instructions=(
        "Over the last 2 weeks, how often have you been bothered by the following problems?"
    ),
    items=tuple(
        Item(number=n, low=0, high=3, text=text) for n, text in enumerate(_GAD7_ITEMS, start=1)
    ),
    scoring_groups=_singles(7),
    scoring="Sum of items 1 to 7 (0 to 21).",
    answer_options=FREQUENCY_ANSWERS,
    bands=(
        Band("minimal", "Minimal", 0, 4),
        Band("mild", "Mild", 5, 9),
        Band("moderate", "Moderate", 10, 14),
        Band("severe", "Severe", 15, 21),
    ),
    direction="down",
    recall_period="2 weeks",
    licence=PFIZER_LICENCE,
    copyright=PFIZER_COPYRIGHT,
    loinc_panel="69737-5",
    loinc_total="70274-6",
)

QIDS_SR16 = Instrument(
    code="qids_sr16",
    name="QIDS-SR16",
    respondent="patient",
    instrument_version="1.0",
    scoring_version="1.0",
    items=tuple(
        Item(number=n, low=0, high=3, domain=label) for group, label in _QIDS_DOMAINS for n in group
    ),
    scoring_groups=tuple(group for group, _ in _QIDS_DOMAINS),
    scoring=(
        "Nine domains, 0 to 27: max(items 1 to 4) + item 5 + max(items 6 to 9) + items 10 to 14 "
        "+ max(items 15 to 16). The 16 items are never summed."
    ),
    bands=(
        Band("none", "None", 0, 5),
        Band("mild", "Mild", 6, 10),
        Band("moderate", "Moderate", 11, 15),
        Band("severe", "Severe", 16, 20),
        Band("very_severe", "Very severe", 21, 27),
    ),
    direction="down",
    recall_period="7 days",
    licence=(
        "Paper use free for clinicians and researchers; app use: ask the authors before a "
        "commercial release. Item wording is not reproduced."
    ),
    safety_item=12,
)

MADRS = Instrument(
    code="madrs",
    name="MADRS",
    respondent="clinician",
    instrument_version="1.0",
    scoring_version="1.0",
    items=_plain_items(10, 6),
    scoring_groups=_singles(10),
    scoring="Sum of items 1 to 10 (0 to 60).",
    bands=(
        Band("normal", "Normal", 0, 6),
        Band("mild", "Mild", 7, 19),
        Band("moderate", "Moderate", 20, 34),
        Band("severe", "Severe", 35, 60),
    ),
    direction="down",
    recall_period=None,
    licence="Item scores only; item wording is never reproduced.",
    copyright="© Royal College of Psychiatrists",
)

CADSS = Instrument(
    code="cadss",
    name="CADSS (23-item form)",
    respondent="clinician",
    instrument_version="1.0",
    scoring_version="1.0",
    items=_plain_items(23, 4),
    scoring_groups=_singles(23),
    scoring="Sum of items 1 to 23 (0 to 92); read as change from the pre-dose rating.",
    bands=(),
    direction="down",
    recall_period=None,
    licence="Terms unverified: item scores only; item wording is never reproduced.",
)

CATALOGUE: dict[str, Instrument] = {i.code: i for i in (PHQ9, GAD7, QIDS_SR16, MADRS, CADSS)}


def get_instrument(code: str) -> Instrument:
    """The catalogue entry for ``code``, else NotFound."""
    try:
        return CATALOGUE[code]
    except KeyError:
        raise NotFound("No such instrument.") from None


def band_of(code: str, total: int) -> Band | None:
    """The severity band of a total on an instrument; None for instruments without bands."""
    instrument = get_instrument(code)
    return next((band for band in instrument.bands if band.contains(total)), None)


def _is_int(value: Any) -> bool:
    # bool is an int subclass in Python, but `true` is not an answer.
    return isinstance(value, int) and not isinstance(value, bool)


def answer_errors(
    instrument: Instrument, answers: Any, difficulty: Any = None
) -> dict[str, list[str]]:
    """Why a form cannot be scored, keyed as the wire reports it (``answers.<index>``)."""
    errors: dict[str, list[str]] = {}
    if not isinstance(answers, list | tuple):
        errors["answers"] = ["Must be a list of integers, one per item, in item order."]
    elif len(answers) != instrument.item_count:
        errors["answers"] = [
            f"{instrument.name} needs exactly {instrument.item_count} answers, one per item; "
            f"got {len(answers)}."
        ]
    else:
        for index, (item, value) in enumerate(zip(instrument.items, answers, strict=True)):
            if not _is_int(value) or not item.low <= value <= item.high:
                errors[f"answers.{index}"] = [
                    f"Item {item.number} must be an integer from {item.low} to {item.high}."
                ]
    if difficulty is not None:
        extra = instrument.difficulty_item
        if extra is None:
            errors["difficulty"] = [f"{instrument.name} has no difficulty item."]
        elif not _is_int(difficulty) or not 0 <= difficulty <= len(extra.options) - 1:
            errors["difficulty"] = [f"Must be an integer from 0 to {len(extra.options) - 1}."]
    return errors


def score(instrument: Instrument, answers: Sequence[int], difficulty: int | None = None) -> Score:
    """Check a completed form and compute its total, band and flags (RuleViolation if invalid)."""
    # Every item must be answered: no total from a partial form, no imputation.
    errors = answer_errors(instrument, answers, difficulty)
    if errors:
        raise RuleViolation(errors)
    total = sum(max(answers[n - 1] for n in group) for group in instrument.scoring_groups)
    band = next((b for b in instrument.bands if b.contains(total)), None)
    safety_value = answers[instrument.safety_item - 1] if instrument.safety_item else None
    positive = safety_value is not None and safety_value >= 1
    return Score(
        total=total,
        band=band,
        flags=(SELF_HARM_FLAG,) if positive else (),
        safety_item=instrument.safety_item if positive else None,
        safety_value=safety_value if positive else None,
    )
