"""The offline default datasets: a demo question corpus and sklearn digits.

Demo question corpus (text)
    A small, synthetic corpus written by this project for demos and tests;
    it is NOT a benchmark and says nothing about real-world accuracy.
    3,000 English questions in five classes (definition, location, number,
    person, time), in the spirit of the TREC question-type task (Li & Roth,
    2002), generated from hand-written templates with a fixed seed, so
    every machine gets the same sentences. Question words are shared
    between classes ("what year ..." is time, "what city ..." is
    location, "what is the population of ..." is number), and the same
    people, places and things fill every class, so no single keyword gives
    the class: a model has to combine words, which a CNN with bigram or
    trigram filters learns within a few epochs. Sentences are unique, so
    no test sentence repeats a training one. Licence: the templates and
    word lists are part of kerasdl (Apache-2.0); no third-party text.

Digits (images)
    The 1,797 8x8 grey digit images bundled with scikit-learn
    (`sklearn.datasets.load_digits`, a copy of the UCI "Optical Recognition
    of Handwritten Digits" test set; BSD-3-Clause with scikit-learn).
    Pixel values 0..16 are scaled to [0, 1]; the pipeline upsamples them
    to 28x28x1 with bilinear `tf.image.resize`, so models built for MNIST
    (e.g. LeNet with "valid" convolutions) fit.
"""

import numpy as np

from kerasdl.data.bundle import Examples

DEMO_TEXT_SOURCE = "kerasdl demo question corpus"
DIGITS_SOURCE = "sklearn digits"
DIGITS_SHAPE = (28, 28, 1)
DEMO_CLASS_NAMES = ("definition", "location", "number", "person", "time")
DEMO_SENTENCES_PER_CLASS = 600
_CORPUS_SEED = 20140825  # fixed: the corpus is the same on every machine

_WORDS = {
    "person": [
        "albert einstein",
        "marie curie",
        "ada lovelace",
        "isaac newton",
        "charles darwin",
        "nelson mandela",
        "frida kahlo",
        "leonardo",
        "jane austen",
        "alan turing",
        "cleopatra",
        "mozart",
        "galileo",
        "florence nightingale",
        "napoleon",
        "confucius",
        "amelia earhart",
    ],
    "place": [
        "paris",
        "kenya",
        "the amazon",
        "mount everest",
        "tokyo",
        "peru",
        "the sahara",
        "iceland",
        "lake victoria",
        "chicago",
        "egypt",
        "the moon",
        "sydney",
        "canada",
        "the nile",
        "venice",
        "mars",
    ],
    "thing": [
        "the telephone",
        "penicillin",
        "the printing press",
        "radar",
        "the steam engine",
        "the light bulb",
        "the internet",
        "insulin",
        "the compass",
        "paper",
        "the bicycle",
        "chocolate",
        "the piano",
        "the vaccine",
        "glass",
        "the calendar",
        "the telescope",
        "jazz",
    ],
    "work": [
        "the first novel",
        "a famous symphony",
        "the theory of evolution",
        "a book about gravity",
        "the opera",
        "the poem",
        "a famous letter",
        "the national anthem",
        "the painting",
        "the speech",
    ],
    "event": [
        "the olympics",
        "the world cup",
        "the first moon landing",
        "the great fire",
        "the gold rush",
        "the revolution",
        "the war",
        "the festival",
        "the treaty",
        "the earthquake",
        "the expedition",
    ],
    "place_noun": [
        "city",
        "country",
        "continent",
        "island",
        "state",
        "town",
        "region",
        "river",
        "mountain range",
        "province",
    ],
    "person_noun": [
        "scientist",
        "writer",
        "inventor",
        "painter",
        "composer",
        "explorer",
        "king",
        "queen",
        "president",
        "chemist",
        "poet",
    ],
    "time_noun": ["year", "century", "decade", "month", "day", "season"],
    "amount": [
        "people",
        "tourists",
        "animals",
        "languages",
        "islands",
        "trees",
        "museums",
        "rivers",
        "bridges",
        "cars",
        "books",
        "students",
    ],
    "measure": [
        "tall",
        "long",
        "deep",
        "far",
        "big",
        "old",
        "heavy",
        "wide",
        "high",
        "hot",
        "fast",
        "expensive",
    ],
    "term": [
        "photosynthesis",
        "democracy",
        "gravity",
        "an atom",
        "a virus",
        "a sonnet",
        "inflation",
        "a glacier",
        "an algorithm",
        "a comet",
        "irony",
        "a symphony",
        "a volcano",
        "a gene",
        "a haiku",
        "a tariff",
    ],
    "acronym": [
        "nasa",
        "unesco",
        "dna",
        "laser",
        "radar",
        "scuba",
        "fifa",
        "nato",
        "html",
        "gps",
        "ufo",
        "atm",
    ],
    "verb": [
        "invented",
        "discovered",
        "built",
        "described",
        "painted",
        "studied",
        "visited",
        "explored",
        "wrote about",
        "named",
    ],
}

# Each class mixes question words that other classes use too.
_TEMPLATES = {
    "definition": [
        "what is {term} ?",
        "what does {acronym} stand for ?",
        "what is the meaning of {term} ?",
        "what is {thing} ?",
        "how would you define {term} ?",
        "what does the word {term} mean ?",
        "what was {thing} used for in {place} ?",
        "what kind of thing is {term} ?",
        "how does {thing} work ?",
        "what is meant by {term} in {place} ?",
    ],
    "location": [
        "where is {place} ?",
        "what {place_noun} did {person} live in ?",
        "in what {place_noun} was {thing} {verb} ?",
        "which {place_noun} hosted {event} ?",
        "where did {person} die ?",
        "what {place_noun} is {place} in ?",
        "where was {thing} {verb} ?",
        "in which {place_noun} did {event} take place ?",
        "what {place_noun} is near {place} ?",
        "where did {event} happen ?",
    ],
    "number": [
        "how many {amount} live in {place} ?",
        "how {measure} is {place} ?",
        "what is the population of {place} ?",
        "how many {amount} did {person} see ?",
        "how {measure} was {thing} ?",
        "how much did {thing} cost in {place} ?",
        "what is the size of {place} ?",
        "how many {amount} are there in {place} ?",
        "how much does {thing} weigh ?",
        "how many times did {person} visit {place} ?",
    ],
    "person": [
        "who {verb} {thing} ?",
        "which {person_noun} {verb} {place} ?",
        "what {person_noun} wrote {work} ?",
        "who was {person} ?",
        "who led {event} ?",
        "which {person_noun} was born in {place} ?",
        "what {person_noun} {verb} {thing} ?",
        "who won {event} in {place} ?",
        "name the {person_noun} who {verb} {thing} .",
        "who did {person} marry ?",
    ],
    "time": [
        "when did {person} die ?",
        "what {time_noun} was {thing} {verb} ?",
        "when was {thing} {verb} ?",
        "in what {time_noun} did {event} take place ?",
        "when did {event} happen in {place} ?",
        "how long ago did {person} visit {place} ?",
        "in which {time_noun} was {person} born ?",
        "when did {person} write {work} ?",
        "what {time_noun} did {event} end ?",
        "when is {event} held in {place} ?",
    ],
}


def _fill(template, rng):
    slots = {
        name: _WORDS[name][rng.integers(len(_WORDS[name]))]
        for name in _WORDS
        if "{" + name + "}" in template
    }
    return template.format(**slots)


def demo_text_examples() -> tuple[Examples, list[str]]:
    """Generates the demo question corpus (see the module docstring).

    Returns:
        `(examples, class_names)`: 3,000 unique sentences, 600 per class,
        in a fixed order.
    """
    rng = np.random.default_rng(_CORPUS_SEED)
    seen = set()
    sentences, labels = [], []
    for label, name in enumerate(DEMO_CLASS_NAMES):
        count = 0
        templates = _TEMPLATES[name]
        while count < DEMO_SENTENCES_PER_CLASS:
            sentence = _fill(templates[rng.integers(len(templates))], rng)
            # The same sentence under two classes would be unlearnable, and
            # a repeat could land in both train and test.
            if sentence in seen:
                continue
            seen.add(sentence)
            sentences.append(sentence)
            labels.append(label)
            count += 1
    examples = Examples(
        np.array(sentences, dtype=object),
        np.array(labels, dtype=np.int64),
        DEMO_TEXT_SOURCE,
    )
    return examples, list(DEMO_CLASS_NAMES)


def digits_examples() -> tuple[Examples, list[str]]:
    """Loads scikit-learn's bundled 8x8 digits as float32 in [0, 1].

    Returns:
        `(examples, class_names)` with features `(1797, 8, 8, 1)` float32
        and class names `"0"`..`"9"`.
    """
    # Imported here: scikit-learn is only needed for this default.
    from sklearn.datasets import load_digits

    digits = load_digits()
    # 0..16 grey levels -> [0, 1]; (1797, 8, 8) -> (1797, 8, 8, 1)
    images = (digits.images / 16.0).astype(np.float32)[..., np.newaxis]
    examples = Examples(images, digits.target.astype(np.int64), DIGITS_SOURCE)
    return examples, [str(name) for name in digits.target_names]
