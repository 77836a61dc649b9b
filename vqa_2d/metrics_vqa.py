"""The official VQA accuracy (GT-Vision-Lab/VQA ``vqaEval.py``) and METER's answer vocabulary and soft scores.

Official metric, per question: the prediction is normalised (punctuation, then digit words / articles /
contractions); the ten ground-truth answers are punctuation-normalised only when they are not all identical;
``acc = mean_i min(1, #{j != i : gt_j == pred} / 3)`` over the ten leave-one-out subsets. Reported overall and per
``answer_type`` in percent (the official script rounds to 2 decimals; we keep full precision).

METER (zdou0830/METER ``meter/utils/glossary.py`` ``normalize_word``, ``write_vqa.py``): the label vocabulary is
every ``multiple_choice_answer`` of train+val seen >= 9 times after ``normalize_word`` (3129 labels, in order of
first occurrence); a question's targets are its raw answers that are labels, scored 0.3/0.6/0.9/1.0 for 1/2/3/>=4
annotators.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

CONTRACTIONS = {
    'aint': "ain't", 'arent': "aren't", 'cant': "can't", 'couldve': "could've", 'couldnt': "couldn't",
    "couldn'tve": "couldn't've", "couldnt've": "couldn't've", 'didnt': "didn't", 'doesnt': "doesn't",
    'dont': "don't", 'hadnt': "hadn't", "hadnt've": "hadn't've", "hadn'tve": "hadn't've", 'hasnt': "hasn't",
    'havent': "haven't", 'hed': "he'd", "hed've": "he'd've", "he'dve": "he'd've", 'hes': "he's", 'howd': "how'd",
    'howll': "how'll", 'hows': "how's", "Id've": "I'd've", "I'dve": "I'd've", 'Im': "I'm", 'Ive': "I've",
    'isnt': "isn't", 'itd': "it'd", "itd've": "it'd've", "it'dve": "it'd've", 'itll': "it'll", "let's": "let's",
    'maam': "ma'am", 'mightnt': "mightn't", "mightnt've": "mightn't've", "mightn'tve": "mightn't've",
    'mightve': "might've", 'mustnt': "mustn't", 'mustve': "must've", 'neednt': "needn't", 'notve': "not've",
    'oclock': "o'clock", 'oughtnt': "oughtn't", "ow's'at": "'ow's'at", "'ows'at": "'ow's'at", "'ow'sat": "'ow's'at",
    'shant': "shan't", "shed've": "she'd've", "she'dve": "she'd've", "she's": "she's", 'shouldve': "should've",
    'shouldnt': "shouldn't", "shouldnt've": "shouldn't've", "shouldn'tve": "shouldn't've", "somebody'd": 'somebodyd',
    "somebodyd've": "somebody'd've", "somebody'dve": "somebody'd've", 'somebodyll': "somebody'll",
    'somebodys': "somebody's", 'someoned': "someone'd", "someoned've": "someone'd've", "someone'dve": "someone'd've",
    'someonell': "someone'll", 'someones': "someone's", 'somethingd': "something'd",
    "somethingd've": "something'd've", "something'dve": "something'd've", 'somethingll': "something'll",
    'thats': "that's", 'thered': "there'd", "thered've": "there'd've", "there'dve": "there'd've",
    'therere': "there're", 'theres': "there's", 'theyd': "they'd", "theyd've": "they'd've", "they'dve": "they'd've",
    'theyll': "they'll", 'theyre': "they're", 'theyve': "they've", 'twas': "'twas", 'wasnt': "wasn't",
    "wed've": "we'd've", "we'dve": "we'd've", 'weve': "we've", 'werent': "weren't", 'whatll': "what'll",
    'whatre': "what're", 'whats': "what's", 'whatve': "what've", 'whens': "when's", 'whered': "where'd",
    'wheres': "where's", 'whereve': "where've", 'whod': "who'd", "whod've": "who'd've", "who'dve": "who'd've",
    'wholl': "who'll", 'whos': "who's", 'whove': "who've", 'whyll': "why'll", 'whyre': "why're", 'whys': "why's",
    'wont': "won't", 'wouldve': "would've", 'wouldnt': "wouldn't", "wouldnt've": "wouldn't've",
    "wouldn'tve": "wouldn't've", 'yall': "y'all", "yall'll": "y'all'll", "y'allll": "y'all'll",
    "yall'd've": "y'all'd've", "y'alld've": "y'all'd've", "y'all'dve": "y'all'd've", 'youd': "you'd",
    "youd've": "you'd've", "you'dve": "you'd've", 'youll': "you'll", 'youre': "you're", 'youve': "you've",
}
MANUAL_MAP = {"none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5", "six": "6",
              "seven": "7", "eight": "8", "nine": "9", "ten": "10"}
ARTICLES = ("a", "an", "the")
# Kept verbatim: "(?!<=\d)" is a typo for a look-behind in the official script, and it behaves as written.
PERIOD_STRIP = re.compile(r"(?!<=\d)(\.)(?!\d)")
COMMA_STRIP = re.compile(r"(\d)(\,)(\d)")
PUNCT = (";", r"/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`", ",", "?", "!")


def process_punctuation(text: str) -> str:
    """Official ``processPunctuation``: drop a mark next to a space (or anywhere once ``d,d`` occurs), else
    replace it by a space; then drop periods that are not decimal points."""
    out = text
    for p in PUNCT:
        if (p + " " in text or " " + p in text) or COMMA_STRIP.search(text) is not None:
            out = out.replace(p, "")
        else:
            out = out.replace(p, " ")
    # The official call passes re.UNICODE (= 32) positionally, i.e. as ``count``: at most 32 periods go.
    return PERIOD_STRIP.sub("", out, count=re.UNICODE)


def process_digit_article(text: str) -> str:
    """Official ``processDigitArticle``: lower-case, number words to digits, drop articles, fix contractions."""
    words = [MANUAL_MAP.get(w, w) for w in text.lower().split()]
    words = [CONTRACTIONS.get(w, w) for w in words if w not in ARTICLES]
    return " ".join(words)


def clean(text: str) -> str:
    """Official whitespace clean-up applied to every answer first."""
    return text.replace("\n", " ").replace("\t", " ").strip()


def normalize_answer(text: str) -> str:
    """The official normalisation of a predicted answer."""
    return process_digit_article(process_punctuation(clean(text)))


def normalize_word(text: str) -> str:
    """METER's ``normalize_word`` (vocabulary building): the official normalisation, then commas removed."""
    return process_digit_article(process_punctuation(text)).replace(",", "")


def question_accuracy(prediction: str, gt_answers: Sequence[str]) -> float:
    """Official accuracy of one prediction against the (ten) ground-truth answers, in [0, 1]."""
    pred = normalize_answer(prediction)
    gts = [clean(a) for a in gt_answers]
    if len(set(gts)) > 1:
        gts = [process_punctuation(a) for a in gts]
    accs = []
    for i in range(len(gts)):
        matches = sum(1 for j, a in enumerate(gts) if j != i and a == pred)
        accs.append(min(1.0, matches / 3))
    return sum(accs) / len(accs)


class VQAAccuracy:
    """Accumulates the official accuracy overall and per answer type (sums, so ranks can be reduced)."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.counts: dict[str, int] = {}

    def update(self, prediction: str, gt_answers: Sequence[str], answer_type: str | None = None) -> float:
        acc = question_accuracy(prediction, gt_answers)
        for key in ("overall", answer_type):
            if key is not None:
                self.sums[key] = self.sums.get(key, 0.0) + acc
                self.counts[key] = self.counts.get(key, 0) + 1
        return acc

    def merge(self, sums: Mapping[str, float], counts: Mapping[str, int]) -> None:
        for k, v in sums.items():
            self.sums[k] = self.sums.get(k, 0.0) + v
            self.counts[k] = self.counts.get(k, 0) + counts[k]

    def result(self) -> dict[str, float]:
        """``{"acc": overall %, "acc_yes/no": %, "acc_number": %, "acc_other": %}`` (types that occurred)."""
        out = {}
        for key in sorted(self.sums, key=lambda k: (k != "overall", k)):
            name = "acc" if key == "overall" else f"acc_{key}"
            out[name] = 100.0 * self.sums[key] / self.counts[key]
        return out


def soft_score(occurrences: int) -> float:
    """METER's ``get_score``: 0 / 0.3 / 0.6 / 0.9 / 1.0 for 0 / 1 / 2 / 3 / >= 4 annotators."""
    return (0.0, 0.3, 0.6, 0.9)[occurrences] if occurrences < 4 else 1.0


def build_answer_vocab(multiple_choice_answers: Iterable[str], min_count: int = 9) -> list[str]:
    """METER's label list: normalised ``multiple_choice_answer`` strings seen >= ``min_count`` times, in order of
    first occurrence (train annotations first, then val)."""
    counter = Counter(normalize_word(a) for a in multiple_choice_answers)
    return [answer for answer, n in counter.items() if n >= min_count]


def answer_targets(answers: Sequence[str], ans2label: Mapping[str, int]) -> tuple[list[int], list[float]]:
    """METER's targets of one question: labels of its raw answers (no normalisation, as upstream) and their soft
    scores, in order of first occurrence."""
    counts = Counter(answers)
    labels, scores = [], []
    for answer, n in counts.items():
        if answer in ans2label:
            labels.append(ans2label[answer])
            scores.append(soft_score(n))
    return labels, scores
