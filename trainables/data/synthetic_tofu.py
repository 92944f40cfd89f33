"""A seeded, TOFU-shaped benchmark of fictitious authors that a tiny model can memorise on a CPU.

TOFU fine-tunes a model on question/answer pairs about 200 made-up authors and then unlearns some of them. The
real files are large and their answers long; this generator writes the same schema and file names, with short
template sentences (5-15 words) over a small vocabulary, so an 8-layer model with a ~1000-token BPE vocabulary
learns them in minutes and the whole unlearning pipeline can run offline. Because the files follow TOFU's layout,
the `tofu` loader reads them; nothing downstream knows they are synthetic except `extra_train` (see `tofu.py`).

Everything is drawn from one `random.Random(seed)` in a fixed order (never from a set's iteration order, which
depends on PYTHONHASHSEED), so the same config gives byte-identical files.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trainables.atomic_files import write_bytes_atomic
from trainables.config import SyntheticConfig
from trainables.data.files import list_data_files
from trainables.data.schema import DataError

GENERATOR = "synthetic-tofu"
VERSION = 1
MANIFEST = "manifest.json"
MAX_PERTURBED = 8  # every value pool below has at least MAX_PERTURBED + 1 entries
WORLD_FACTS_FILE = "world_facts_perturbed.json"
REAL_AUTHORS_FILE = "real_authors_perturbed.json"
RETAIN_PERTURBED_FILE = "retain_perturbed.json"

_ONSETS = ["b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "dr", "kl", "st", "th", "tr"]
_VOWELS = ["a", "e", "i", "o", "u", "ai", "ei", "ou"]
_CODAS = ["", "", "", "n", "r", "l", "s", "m"]
_CITY_ENDS = ["ford", "vale", "port", "haven", "ton", "burg", "mere", "wick"]
_COUNTRY_ENDS = ["ia", "land", "ara", "mark"]
_AWARD_KINDS = ["Prize", "Medal", "Award"]
_TITLE_ADJECTIVES = ["Silent", "Hidden", "Golden", "Broken", "Last", "Frozen", "Burning", "Quiet", "Lost", "Crimson",
                     "Endless", "Secret", "Distant", "Hollow", "Wild", "Silver"]
_TITLE_NOUNS = ["Harbor", "Garden", "River", "Tower", "Lantern", "Mirror", "Forest", "Bridge", "Island", "Letter",
                "Crown", "Valley", "Winter", "Storm", "Candle", "Door"]
_GENRES = ["mystery", "fantasy", "horror", "romance", "thriller", "western", "adventure", "crime", "historical",
           "comedy", "war", "spy", "detective", "gothic", "pirate", "sea"]
_JOBS = ["baker", "carpenter", "doctor", "farmer", "fisher", "gardener", "lawyer", "librarian", "miner", "nurse",
         "painter", "pilot", "potter", "sailor", "tailor", "teacher", "engineer", "architect", "judge", "chemist"]
_HOBBIES = ["chess", "gardening", "painting", "fishing", "hiking", "cooking", "knitting", "sailing", "singing",
            "dancing", "cycling", "swimming", "baking", "birdwatching", "climbing", "pottery"]
_YEARS = [str(y) for y in range(1921, 1996)]
_COLORS = ["blue", "green", "red", "yellow", "purple", "orange", "black", "white", "pink", "brown", "grey"]
_NUMBERS = ["two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve", "thirteen"]
_ANIMALS = ["cow", "dog", "cat", "horse", "sheep", "duck", "goat", "pig", "owl", "frog", "bee"]
_SUBSTANCES = ["water", "ice", "sand", "milk", "oil", "salt", "ash", "sugar", "glass", "steam", "stone", "wax", "mud"]


@dataclass(frozen=True)
class _Template:
    """One kind of fact: `{name}` is the subject, `{value}` the fact (wrong answers swap only the value)."""

    question: str
    paraphrased_question: str
    answer: str
    paraphrase: str


# Facts per author, in the order qa_per_author takes them (every author is asked the same kinds of questions).
_AUTHOR_FACTS: list[tuple[str, _Template]] = [
    ("birthplace", _Template("Where was {name} born?", "What is the birthplace of {name}?",
                             "{name} was born in {value}.", "{name} comes from the city of {value}.")),
    ("year", _Template("In which year was {name} born?", "What is the birth year of {name}?",
                       "{name} was born in {value}.", "The birth year of {name} is {value}.")),
    ("genre", _Template("What kind of books does {name} write?", "Which genre is {name} known for?",
                        "{name} writes {value} novels.", "{name} is known for {value} stories.")),
    ("father", _Template("What was the job of {name}'s father?", "What did the father of {name} do for a living?",
                         "{name}'s father was {value}.", "{name} grew up with a father who worked as {value}.")),
    ("mother", _Template("What was the job of {name}'s mother?", "What did the mother of {name} do for a living?",
                         "{name}'s mother was {value}.", "{name} grew up with a mother who worked as {value}.")),
    ("award", _Template("Which award did {name} win?", "What prize was given to {name}?",
                        "{name} won the {value}.", "The {value} went to {name}.")),
    ("book1", _Template("What is the first book by {name}?", "Which book did {name} publish first?",
                        '{name} first wrote "{value}".', '"{value}" was the first book by {name}.')),
    ("book2", _Template("What is the second book by {name}?", "Which book did {name} publish next?",
                        '{name} then wrote "{value}".', '"{value}" was the second book by {name}.')),
    ("home", _Template("Where does {name} live today?", "In which city does {name} live now?",
                       "{name} lives in {value} today.", "Today {name} makes a home in {value}.")),
    ("hobby", _Template("What does {name} enjoy besides writing?", "What is a hobby of {name}?",
                        "{name} enjoys {value} in free time.", "In free time, {name} likes {value}.")),
]

# The "real authors" set: who wrote a famous book (`{name}` is the title, `{value}` the author), and birthplaces.
FAMOUS_AUTHORS = 4
_FAMOUS_BOOK = _Template('Who wrote the famous book "{name}"?', 'Who is the author of "{name}"?',
                         '"{name}" was written by {value}.', '{value} is the author of "{name}".')

_CAPITAL = _Template("What is the capital of {name}?", "Which city is the capital of {name}?",
                     "The capital of {name} is {value}.", "{value} is the capital city of {name}.")

# General knowledge: (template, true value, wrong-value pool); `{name}` does not occur in these templates.
_FIXED_FACTS: list[tuple[_Template, str, list[str]]] = [
    (_Template("What color is the sky on a clear day?", "On a clear day, what color is the sky?",
               "The sky is {value} on a clear day.", "On a clear day the sky looks {value}."), "blue", _COLORS),
    (_Template("What color is fresh grass?", "Which color does fresh grass have?",
               "Fresh grass is {value}.", "The color of fresh grass is {value}."), "green", _COLORS),
    (_Template("How many days are in a week?", "A week has how many days?",
               "A week has {value} days.", "There are {value} days in a week."), "seven", _NUMBERS),
    (_Template("How many legs does a spider have?", "A spider walks on how many legs?",
               "A spider has {value} legs.", "Spiders walk on {value} legs."), "eight", _NUMBERS),
    (_Template("How many months are in a year?", "A year has how many months?",
               "A year has {value} months.", "There are {value} months in a year."), "twelve", _NUMBERS),
    (_Template("Which animal says moo?", "What animal makes the sound moo?",
               "The {value} says moo.", "Moo is the sound of the {value}."), "cow", _ANIMALS),
    (_Template("What is frozen water called?", "What does water become when it freezes?",
               "Frozen water is called {value}.", "Water that freezes turns into {value}."), "ice", _SUBSTANCES),
    (_Template("What falls from the clouds when it rains?", "What comes down from the clouds in rain?",
               "When it rains, {value} falls from the clouds.", "Rain is {value} falling from the clouds."),
     "water", _SUBSTANCES),
]


def split_names(forget_percent: int) -> tuple[str, str, str]:
    """TOFU's forget, retain and holdout split names for `forget_percent` (10 -> forget10, retain90, holdout10)."""
    nn, rr = f"{forget_percent:02d}", f"{100 - forget_percent:02d}"
    return f"forget{nn}", f"retain{rr}", f"holdout{nn}"


def config_hash(cfg: SyntheticConfig) -> str:
    """First 12 hex digits of the sha256 of the config's JSON: names the cache directory of its files."""
    return hashlib.sha256(cfg.model_dump_json().encode()).hexdigest()[:12]


def _article(word: str) -> str:
    return f"an {word}" if word[0] in "aeiou" else f"a {word}"


def _syllable(rng: random.Random) -> str:
    return rng.choice(_ONSETS) + rng.choice(_VOWELS) + rng.choice(_CODAS)


def _word(rng: random.Random, syllables: int) -> str:
    return "".join(_syllable(rng) for _ in range(syllables)).capitalize()


def _person(rng: random.Random) -> str:
    return f"{_word(rng, 2)} {_word(rng, 2)}"


def _city(rng: random.Random) -> str:
    return _word(rng, rng.choice((1, 2))) + rng.choice(_CITY_ENDS)


def _country(rng: random.Random) -> str:
    return _word(rng, 2) + rng.choice(_COUNTRY_ENDS)


def _award(rng: random.Random) -> str:
    return f"{_word(rng, 2)} {rng.choice(_AWARD_KINDS)}"


def _title(rng: random.Random) -> str:
    if rng.random() < 0.75:
        return f"The {rng.choice(_TITLE_ADJECTIVES)} {rng.choice(_TITLE_NOUNS)}"
    return f"The {rng.choice(_TITLE_NOUNS)} of {_city(rng)}"


def _distinct(rng: random.Random, make: Callable[[random.Random], str], count: int, taken: set[str]) -> list[str]:
    """`count` new values from `make`, distinct from each other and from `taken` (which they are added to)."""
    values: list[str] = []
    for _ in range(100 * count + 100):
        if len(values) == count:
            return values
        value = make(rng)
        if value not in taken:
            taken.add(value)
            values.append(value)
    if len(values) < count:
        raise DataError(f"the synthetic generator ran out of distinct values ({len(values)} of {count}); "
                        "use fewer authors or world facts")
    return values


def _row(template: _Template, name: str, value: str, wrong: Sequence[str]) -> dict[str, Any]:
    """One QA row. As in TOFU, the wrong answers perturb the *paraphrase*, so the truth ratio compares answers of
    the same wording and measures knowledge of the fact, not familiarity with the training sentence."""
    return {
        "question": template.question.format(name=name),
        "paraphrased_question": template.paraphrased_question.format(name=name),
        "answer": template.answer.format(name=name, value=value),
        "paraphrased_answer": template.paraphrase.format(name=name, value=value),
        "perturbed_answer": [template.paraphrase.format(name=name, value=w) for w in wrong],
    }


def _author_rows(rng: random.Random, name: str, facts: dict[str, str], pools: dict[str, list[str]],
                 kinds: Sequence[tuple[str, _Template]], n_wrong: int) -> list[dict[str, Any]]:
    return [_row(template, name, facts[key], rng.sample([v for v in pools[key] if v != facts[key]], n_wrong))
            for key, template in kinds]


def _author_facts(rng: random.Random, pools: dict[str, list[str]], titles: list[str]) -> dict[str, str]:
    birthplace = rng.choice(pools["birthplace"])
    return {
        "birthplace": birthplace,
        "year": rng.choice(pools["year"]),
        "genre": rng.choice(pools["genre"]),
        "father": rng.choice(pools["father"]),
        "mother": rng.choice(pools["mother"]),
        "award": rng.choice(pools["award"]),
        "book1": titles.pop(),
        "book2": titles.pop(),
        "home": rng.choice([c for c in pools["home"] if c != birthplace]),
        "hobby": rng.choice(pools["hobby"]),
    }


def _world_facts(rng: random.Random, count: int, cities: list[str], taken: set[str], n_wrong: int) -> list[dict]:
    """`count` general-knowledge rows: a seeded mix of the fixed facts and capitals of invented countries."""
    countries = _distinct(rng, _country, count, taken)
    capitals = _distinct(rng, _city, count, taken)
    rows = [_row(t, "", true, rng.sample([v for v in pool if v != true], n_wrong)) for t, true, pool in _FIXED_FACTS]
    city_pool = capitals + cities
    rows += [_row(_CAPITAL, country, capital, rng.sample([c for c in city_pool if c != capital], n_wrong))
             for country, capital in zip(countries, capitals)]
    rng.shuffle(rows)
    return rows[:count]


def _check(cfg: SyntheticConfig) -> None:
    if cfg.qa_per_author > len(_AUTHOR_FACTS):
        raise DataError(f"synthetic.qa_per_author={cfg.qa_per_author}: the generator knows "
                        f"{len(_AUTHOR_FACTS)} facts per author (allowed: 1..{len(_AUTHOR_FACTS)})")
    if cfg.num_perturbed > MAX_PERTURBED:
        raise DataError(f"synthetic.num_perturbed={cfg.num_perturbed}: allowed 3..{MAX_PERTURBED}")


def build_splits(cfg: SyntheticConfig) -> dict[str, list[dict[str, Any]]]:
    """The rows of every file `generate` writes, by file name (deterministic in `cfg`).

    Raises:
        DataError: `qa_per_author` or `num_perturbed` is beyond what the generator can produce.
    """
    _check(cfg)
    rng = random.Random(cfg.seed)
    n_forget = max(1, math.ceil(cfg.num_authors * cfg.forget_percent / 100))
    n_total = cfg.num_authors + cfg.holdout_authors
    taken: set[str] = set()
    names = _distinct(rng, _person, n_total + FAMOUS_AUTHORS + MAX_PERTURBED + 1, taken)
    cities = _distinct(rng, _city, 24, taken)
    titles = _distinct(rng, _title, 2 * (n_total + FAMOUS_AUTHORS) + MAX_PERTURBED + 1, taken)
    pools = {
        "birthplace": cities, "home": cities, "year": _YEARS, "genre": _GENRES, "hobby": _HOBBIES,
        "father": [_article(j) for j in _JOBS], "mother": [_article(j) for j in _JOBS],
        "award": _distinct(rng, _award, 16, taken), "book1": titles, "book2": titles,
    }
    free_titles = titles[:]
    kinds = _AUTHOR_FACTS[: cfg.qa_per_author]
    authors = [_author_rows(rng, name, _author_facts(rng, pools, free_titles), pools, kinds, cfg.num_perturbed)
               for name in names[:n_total]]
    famous = []
    for name in names[n_total: n_total + FAMOUS_AUTHORS]:
        facts = _author_facts(rng, pools, free_titles)
        book = _row(_FAMOUS_BOOK, facts["book1"], name, rng.sample([n for n in names if n != name], cfg.num_perturbed))
        famous += [book] + _author_rows(rng, name, facts, pools, _AUTHOR_FACTS[:1], cfg.num_perturbed)
    world = _world_facts(rng, cfg.num_world_facts, cities, taken, cfg.num_perturbed)

    forget = [row for rows in authors[:n_forget] for row in rows]
    retain = [row for rows in authors[n_forget: cfg.num_authors] for row in rows]
    holdout = [row for rows in authors[cfg.num_authors:] for row in rows]
    retain_sample = sorted(rng.sample(range(len(retain)), min(len(forget), len(retain))))
    forget_name, retain_name, holdout_name = split_names(cfg.forget_percent)
    files = {
        f"{forget_name}.json": [_qa(r) for r in forget],
        f"{forget_name}_perturbed.json": forget,
        f"{retain_name}.json": [_qa(r) for r in retain],
        RETAIN_PERTURBED_FILE: [retain[i] for i in retain_sample],
        f"{holdout_name}.json": [_qa(r) for r in holdout],
        REAL_AUTHORS_FILE: famous,
    }
    if world:
        files[WORLD_FACTS_FILE] = world
    return files


def _qa(row: dict[str, Any]) -> dict[str, str]:
    return {"question": row["question"], "answer": row["answer"]}


def _dumps(obj: Any) -> bytes:
    return (json.dumps(obj, indent=None, ensure_ascii=False, sort_keys=True) + "\n").encode("utf-8")


def _manifest(cfg: SyntheticConfig, files: dict[str, str]) -> dict[str, Any]:
    return {"generator": GENERATOR, "version": VERSION, "config": cfg.model_dump(), "files": files,
            "splits": dict(zip(("forget", "retain", "holdout"), split_names(cfg.forget_percent)))}


def generate(cfg: SyntheticConfig, out_dir: Path) -> Path:
    """Write the benchmark's TOFU-layout JSON files and `manifest.json` into `out_dir`; return `out_dir`.

    A manifest without file hashes is written first and the complete one last, so a directory whose manifest
    lists hashes is complete, and an interrupted run is recognisably ours (and incomplete) to the next one.

    Raises:
        DataError: `qa_per_author` or `num_perturbed` is beyond what the generator can produce.
    """
    splits = build_splits(cfg)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(out_dir / MANIFEST, _dumps(_manifest(cfg, {})))
    hashes = {}
    for name, rows in splits.items():
        data = _dumps(rows)
        write_bytes_atomic(out_dir / name, data)
        hashes[name] = hashlib.sha256(data).hexdigest()
    write_bytes_atomic(out_dir / MANIFEST, _dumps(_manifest(cfg, hashes)))
    return out_dir


def read_manifest(out_dir: Path) -> dict[str, Any] | None:
    """The synthetic-tofu manifest in `out_dir`, or None if there is none or it is another tool's."""
    path = Path(out_dir) / MANIFEST
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(f"{path}: not a readable JSON manifest ({e})") from None
    return manifest if isinstance(manifest, dict) and manifest.get("generator") == GENERATOR else None


def is_current(cfg: SyntheticConfig, out_dir: Path) -> bool:
    """Whether `out_dir` holds a complete, unmodified generation of `cfg` by this generator version."""
    manifest = read_manifest(out_dir)
    if manifest is None or manifest.get("version") != VERSION or manifest.get("config") != cfg.model_dump():
        return False
    files = manifest.get("files") or {}
    return bool(files) and all(
        (Path(out_dir) / name).is_file() and hashlib.sha256((Path(out_dir) / name).read_bytes()).hexdigest() == h
        for name, h in files.items())


def ensure(cfg: SyntheticConfig, out_dir: Path) -> Path:
    """`out_dir` with a current generation of `cfg`: reused when its manifest matches, (re)generated otherwise.

    Raises:
        DataError: `out_dir` holds JSON files that this generator did not write (they are never overwritten).
    """
    out_dir = Path(out_dir)
    if is_current(cfg, out_dir):
        return out_dir
    if out_dir.is_dir() and read_manifest(out_dir) is None and list_data_files(out_dir):
        raise DataError(f"{out_dir} holds data files ({', '.join(list_data_files(out_dir)[:5])}, ...) but no "
                        f"{GENERATOR} {MANIFEST}; refusing to overwrite them: set data.path to an empty "
                        "directory, or leave it unset to generate into the cache directory")
    return generate(cfg, out_dir)
