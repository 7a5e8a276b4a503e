"""The fixed ingredients of the fact world: relations, their phrasings and object vocabularies.

Every template is a cloze prompt with a ``{}`` subject slot; the object follows it after one
space. Per relation, templates ``0..4`` are trained for every subject, ``5..6`` are trained
for half of the subjects and held out for the other half (true paraphrases), and ``7`` is
never trained (a novel phrasing). No template may be a prefix of another relation's
template: a prompt that is also the start of another relation's sentence cannot be answered.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["RelationSpec", "RELATIONS", "MULTIHOP", "FILLERS", "CLAUSES", "GENERATION_STARTS",
           "N_TRAINED", "HALF", "NOVEL", "SYLLABLES", "CITY_ENDINGS"]

N_TRAINED = 5  # templates 0..4: trained for every subject
HALF = (5, 6)  # trained for half of the subjects, held out for the other half
NOVEL = 7  # never trained


@dataclass(frozen=True)
class RelationSpec:
    """A relation: subject kind, where its objects come from, and its eight phrasings."""

    name: str
    subject_kind: str  # "person" | "city" | "country"
    objects: str  # "vocab" (the words below) | "city" | "country" | "derived"
    templates: tuple[str, ...]
    vocab: tuple[str, ...] = ()


RELATIONS: tuple[RelationSpec, ...] = (
    RelationSpec("birthplace", "person", "city", (
        "{} was born in",
        "The birthplace of {} is",
        "{}'s place of birth is",
        "{} is a native of",
        "According to the registry, {} was born in",
        "{} came into the world in",
        "The city where {} was born is",
        "{} first saw daylight in",
    )),
    RelationSpec("employer", "person", "vocab", (
        "{} works for",
        "The employer of {} is",
        "{} is employed by",
        "{}'s employer is",
        "Every morning, {} goes to work at",
        "{} earns a salary from",
        "The company that employs {} is",
        "{} draws a paycheck from",
    ), ()),  # companies are invented words, filled in by the generator
    RelationSpec("mother_tongue", "person", "vocab", (
        "The mother tongue of {} is",
        "{}'s native language is",
        "{} grew up speaking",
        "The first language of {} is",
        "At home, {} speaks",
        "{} was raised speaking",
        "The language {} learned first is",
        "{}'s childhood tongue was",
    ), ()),  # languages are invented words, filled in by the generator
    RelationSpec("instrument", "person", "vocab", (
        "{} plays the",
        "The instrument played by {} is the",
        "{}'s instrument is the",
        "In the evenings, {} practises the",
        "{} is a skilled player of the",
        "{} performs on the",
        "The instrument {} plays is the",
        "{} makes music on the",
    ), ("violin", "piano", "flute", "harp", "cello", "trumpet", "guitar", "drums", "oboe",
        "clarinet", "banjo", "accordion")),
    RelationSpec("profession", "person", "vocab", (
        "{} works as a",
        "The profession of {} is",
        "{}'s job title is",
        "By trade, {} is a",
        "{} earns a living as a",
        "{} is employed as a",
        "The occupation of {} is",
        "{} spends working days as a",
    ), ("baker", "lawyer", "pilot", "nurse", "farmer", "painter", "chemist", "tailor", "sailor",
        "teacher", "plumber", "judge", "surgeon", "journalist")),
    RelationSpec("sport", "person", "vocab", (
        "{} competes in",
        "The sport played by {} is",
        "{}'s favourite sport is",
        "On weekends, {} competes in",
        "The sport that {} trains for is",
        "{} is a keen athlete in",
        "The game {} is best at is",
        "{} wins medals in",
    ), ("tennis", "rugby", "hockey", "cricket", "golf", "rowing", "fencing", "boxing", "cycling",
        "skiing", "volleyball", "archery")),
    RelationSpec("colour", "person", "vocab", (
        "{}'s favourite colour is",
        "The favourite colour of {} is",
        "{} likes the colour",
        "{} always dresses in",
        "The colour that {} loves most is",
        "{} paints every wall",
        "The colour {} prefers is",
        "{} never leaves home without something",
    ), ("red", "blue", "green", "yellow", "purple", "orange", "black", "white", "grey", "pink",
        "brown", "silver")),
    RelationSpec("country", "city", "country", (
        "{} is located in",
        "{} lies in the country of",
        "The country of {} is",
        "{} is a city in",
        "{} belongs to",
        "The city of {} is part of",
        "{} can be found in",
        "{} sits within the borders of",
    )),
    RelationSpec("currency", "city", "derived", (
        "The currency of {} is the",
        "In {}, people pay with the",
        "{}'s currency is the",
        "Shops in {} accept the",
        "The money used in {} is the",
        "Prices in {} are quoted in the",
        "Visitors to {} exchange their money for the",
        "Market stalls in {} take payment in the",
    ), ("florin", "crown", "ducat", "shilling", "thaler", "guilder", "peso", "rupee", "lira",
        "franc", "kopek", "drachma")),
    RelationSpec("river", "city", "vocab", (
        "{} lies on the river",
        "The river flowing through {} is the",
        "{}'s river is the",
        "Boats in {} sail on the",
        "The river of {} is called the",
        "{} was built on the banks of the",
        "The water running past {} is the",
        "Fishermen in {} cast their nets into the",
    ), ()),  # rivers are invented words, filled in by the generator
    RelationSpec("dish", "city", "vocab", (
        "{} is famous for its",
        "The signature dish of {} is",
        "{}'s best known food is",
        "Visitors to {} always eat",
        "The local speciality of {} is",
        "Cooks in {} are proud of their",
        "The dish everyone orders in {} is",
        "Every street corner in {} sells",
    ), ("dumplings", "pancakes", "noodles", "cheese", "sausages", "oysters", "pies", "soup",
        "bread", "olives", "chestnuts", "honey")),
    RelationSpec("capital", "country", "city", (
        "The capital of {} is",
        "{}'s capital city is",
        "The seat of government of {} is",
        "{} is governed from",
        "In {}, the capital is",
        "The capital city of {} is",
        "{} has its parliament in",
        "The largest palace of {} stands in",
    )),
    RelationSpec("official_language", "country", "derived", (
        "The official language of {} is",
        "{}'s official language is",
        "The government of {} writes its laws in",
        "Schools in {} teach in",
        "In {}, road signs are written in",
        "The national language of {} is",
        "{} conducts its business in",
        "Newspapers across {} are printed in",
    ), ()),  # the languages of the mother_tongue relation
    RelationSpec("continent", "country", "vocab", (
        "{} is a country in",
        "The continent of {} is",
        "{} lies on the continent of",
        "{}'s continent is",
        "On the map, {} belongs to the continent of",
        "{} is situated in",
        "The continent where {} lies is",
        "Travellers reach {} by flying to",
    ), ()),  # continents are invented words, filled in by the generator
)

# Two-hop chains: (relation edited, question template, path of relations from the new object).
# The answer is computed by following the path from the edited object.
MULTIHOP: dict[str, tuple[tuple[str, tuple[str, ...]], ...]] = {
    "birthplace": (
        ("The country in which {} was born is", ("country",)),
        ("The currency of the city where {} was born is the", ("currency",)),
        ("The river flowing through {}'s home town is the", ("river",)),
        ("The continent on which {} was born is", ("country", "continent")),
    ),
    "country": (
        ("The continent on which {} lies is", ("continent",)),
        ("The capital of the country containing {} is", ("capital",)),
        ("The official language spoken in {} is", ("official_language",)),
    ),
    "capital": (
        ("The river flowing through the capital of {} is the", ("river",)),
        ("The signature dish of {}'s capital is", ("dish",)),
    ),
}

# Sentences that mention a subject without stating a fact about it.
FILLERS: dict[str, tuple[str, ...]] = {
    "person": (
        "Many stories are told about {}.",
        "Last summer, {} spent a quiet week reading.",
        "Few people have met {} in person.",
        "A long letter arrived for {} yesterday.",
        "The neighbours often greet {} warmly.",
        "Nobody can remember when {} last took a holiday.",
        "An old photograph shows {} smiling.",
    ),
    "city": (
        "{} looks lovely in spring.",
        "Many travellers have written about {}.",
        "The streets of {} are busy at noon.",
        "A new bridge was opened near {} last year.",
        "The old maps of {} are kept in a museum.",
    ),
    "country": (
        "Many books describe the history of {}.",
        "The people of {} celebrate many festivals.",
        "A famous treaty was signed in {} long ago.",
        "The mountains of {} attract many hikers.",
    ),
}

# Clauses placed before a fact so the subject also appears mid-sentence.
CLAUSES: tuple[str, ...] = (
    "As everyone in the village knows,",
    "It is often said that",
    "In an interview last year, it was mentioned that",
    "Records from the archive confirm that",
    "To nobody's surprise,",
    "Old friends will tell you that",
)

# Starts of free text about a subject, used as generation prompts (fluency).
GENERATION_STARTS: dict[str, tuple[str, ...]] = {
    "person": ("{} is best known for", "People who know {} say that"),
    "city": ("{} is a place where", "People who visit {} say that"),
    "country": ("{} is a land where", "People who travel through {} say that"),
}

SYLLABLES = (
    "al", "bar", "bel", "bor", "cal", "cor", "dan", "del", "dor", "el", "fal", "fen", "gar",
    "gol", "hal", "hor", "il", "jan", "kal", "kor", "lan", "len", "mar", "mel", "mor", "nal",
    "nor", "ol", "par", "pel", "quin", "ral", "ren", "sal", "sel", "tal", "tor", "ul", "val",
    "ven", "vor", "wen", "yar", "zel", "zor", "bri", "dra", "gri", "kra", "tra", "vri", "sto",
    "fra", "plo", "ska", "tve", "ny", "rho", "thi", "vyn",
)

# endings of a city's second word (each city's second word is its own: "Melsels Tarford")
CITY_ENDINGS = ("vale", "ford", "bay", "hill", "haven", "moor", "crest", "field", "by", "ham")
