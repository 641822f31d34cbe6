"""`cldr_en_de`: an English-German parallel corpus generated from CLDR locale data.

What it is: the embedded, offline default of the translation experiment. Sentences are
built from thirteen templates about timetables, prices, distances and counts; the
locale-dependent parts come from the CLDR data that the `babel` package ships (weekday
and month names, date and time patterns, decimal and currency formats, unit names and
plurals, percent formats) and from the number-to-words functions below. The templates
carry the differences a translation model has to learn:

* reordering: German verb-final subordinate clauses ("..., dass der Zug um 15:45 Uhr
  ankommt"), separable verbs split around the clause ("Der Zug kommt ... an"), perfect
  participles at the end, time before place, verb-second inversion after a fronted
  adverbial;
* morphology: article case and gender agreement (der/den/dem, die/der, das/dem,
  ein/eine/einen/einem/einer), subject-verb agreement in both languages, plural nouns,
  weak adjective endings on ordinals ("am dritten März", "der dritte März");
* locale formats: "3:45 PM" / "15:45 Uhr", "€1,234.50" / "1.234,50 €", "4.5%" /
  "4,5 %", "on Monday, 3 March 2025" / "am Montag, dem 3. März 2025", and numbers in
  words ("three hundred twenty-one" / "dreihunderteinundzwanzig").

What it is not: natural language. The vocabulary is closed (a few hundred words plus
digits), every sentence comes from a template, and the mapping is deterministic, so a
small model can reach a very high BLEU. Use it for smoke tests, teaching and debugging a
translation pipeline end to end; BLEU on it says nothing about WMT-style BLEU and is
not comparable to published numbers.

The corpus is a pure function of (seed, split sizes, the installed CLDR version): the
same call gives the same lines on every machine with the same `babel`. Pairs are
unique on each side across the whole corpus, so no sentence of one split appears in
another. Non-breaking spaces from CLDR formats are written as plain spaces so that
the text survives tokenizer normalisation unchanged.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Callable

import numpy as np
from babel import dates as babel_dates
from babel import numbers as babel_numbers
from babel import units as babel_units

NAME = 'cldr_en_de'
LANGUAGES = ('en', 'de')
SPLITS = ('train', 'val', 'test')
DEFAULT_SIZES = {'train': 40_000, 'val': 1_000, 'test': 1_000}
DEFAULT_SEED = 20250303

# --------------------------------------------------------------------------------------
# Numbers in words. American English without "and" ("one hundred one"); German in the
# one-word spelling below a million ("dreihunderteinundzwanzig") and with the feminine
# nouns Million/Milliarde as separate words above it, without a leading "ein" before
# hundert/tausend ("hunderteins", "tausend").
# --------------------------------------------------------------------------------------

_EN_ONES = [
    'zero',
    'one',
    'two',
    'three',
    'four',
    'five',
    'six',
    'seven',
    'eight',
    'nine',
    'ten',
    'eleven',
    'twelve',
    'thirteen',
    'fourteen',
    'fifteen',
    'sixteen',
    'seventeen',
    'eighteen',
    'nineteen',
]
_EN_TENS = ['_', '_', 'twenty', 'thirty', 'forty', 'fifty', 'sixty', 'seventy', 'eighty', 'ninety']
_EN_SCALES = ((10**9, 'billion'), (10**6, 'million'), (10**3, 'thousand'))

_DE_ONES = [
    'null',
    'eins',
    'zwei',
    'drei',
    'vier',
    'fünf',
    'sechs',
    'sieben',
    'acht',
    'neun',
    'zehn',
    'elf',
    'zwölf',
    'dreizehn',
    'vierzehn',
    'fünfzehn',
    'sechzehn',
    'siebzehn',
    'achtzehn',
    'neunzehn',
]
_DE_TENS = [
    '_',
    '_',
    'zwanzig',
    'dreißig',
    'vierzig',
    'fünfzig',
    'sechzig',
    'siebzig',
    'achtzig',
    'neunzig',
]
_DE_BIG = ((10**9, 'Milliarde', 'Milliarden'), (10**6, 'Million', 'Millionen'))

_MAX_WORDS = 10**12


def _check_range(n: int) -> None:
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool):
        raise TypeError(f'number words need an int, got {n!r}')
    if not 0 <= n < _MAX_WORDS:
        raise ValueError(f'number words cover 0 <= n < 10**12, got {n}')


def _en_below_1000(n: int) -> str:
    hundreds, rest = divmod(n, 100)
    words = [f'{_EN_ONES[hundreds]} hundred'] if hundreds else []
    if rest >= 20:
        tens, ones = divmod(rest, 10)
        words.append(_EN_TENS[tens] + (f'-{_EN_ONES[ones]}' if ones else ''))
    elif rest:
        words.append(_EN_ONES[rest])
    return ' '.join(words)


def number_to_words_en(n: int) -> str:
    """321 -> 'three hundred twenty-one'; 1000000 -> 'one million'."""
    _check_range(n)
    if n == 0:
        return 'zero'
    words = []
    for scale, name in _EN_SCALES:
        group, n = divmod(n, scale)
        if group:
            words.append(f'{_en_below_1000(group)} {name}')
    if n:
        words.append(_en_below_1000(n))
    return ' '.join(words)


def _de_below_1000(n: int, *, final: bool) -> str:
    # "eins" only closes a number; inside a compound or before a noun it is "ein".
    hundreds, rest = divmod(n, 100)
    word = ''
    if hundreds:
        word = 'hundert' if hundreds == 1 else _DE_ONES[hundreds] + 'hundert'
    if rest == 1:
        word += 'eins' if final else 'ein'
    elif rest >= 20:
        tens, ones = divmod(rest, 10)
        if ones:
            word += ('ein' if ones == 1 else _DE_ONES[ones]) + 'und'
        word += _DE_TENS[tens]
    elif rest:
        word += _DE_ONES[rest]
    return word


def number_to_words_de(n: int) -> str:
    """321 -> 'dreihunderteinundzwanzig'; 1000000 -> 'eine Million'."""
    _check_range(n)
    if n == 0:
        return 'null'
    words = []
    for scale, singular, plural in _DE_BIG:
        group, n = divmod(n, scale)
        if group == 1:
            words.append(f'eine {singular}')
        elif group:
            # The feminine noun makes a closing "ein" inflect: hunderteine Millionen.
            count = _de_below_1000(group, final=False)
            if group % 100 == 1:
                count += 'e'
            words.append(f'{count} {plural}')
    thousands, ones = divmod(n, 1000)
    small = ''
    if thousands:
        small = ('' if thousands == 1 else _de_below_1000(thousands, final=False)) + 'tausend'
    if ones:
        small += _de_below_1000(ones, final=True)
    if small:
        words.append(small)
    return ' '.join(words)


_EN_IRREGULAR_ORDINALS = {
    'one': 'first',
    'two': 'second',
    'three': 'third',
    'five': 'fifth',
    'eight': 'eighth',
    'nine': 'ninth',
    'twelve': 'twelfth',
}


def ordinal_words_en(n: int) -> str:
    """21 -> 'twenty-first'; 100 -> 'one hundredth'."""
    if n < 1:
        raise ValueError(f'ordinals start at 1, got {n}')
    words = number_to_words_en(n)
    head, sep, last = max(
        (words.rpartition(' '), words.rpartition('-')), key=lambda parts: len(parts[0])
    )
    if last in _EN_IRREGULAR_ORDINALS:
        last = _EN_IRREGULAR_ORDINALS[last]
    elif last.endswith('y'):
        last = last[:-1] + 'ieth'
    else:
        last += 'th'
    return head + sep + last


def ordinal_stem_de(n: int) -> str:
    """The adjective stem before the ending: 1 -> 'erst', 3 -> 'dritt', 20 -> 'zwanzigst'."""
    if not 1 <= n < 10**6:
        raise ValueError(f'German ordinals here cover 1 <= n < 10**6, got {n}')
    words = number_to_words_de(n)
    rest = n % 100
    if rest == 0 or rest >= 20:
        return words + 'st'
    if rest == 1:
        return words[: -len('eins')] + 'erst'
    if rest == 3:
        return words[: -len('drei')] + 'dritt'
    if rest == 7:
        return words[: -len('sieben')] + 'siebt'
    if rest == 8:
        return words  # acht + e: "achte", not "achtte"
    return words + 't'


def ordinal_words_de(n: int, ending: str = 'e') -> str:
    """3 -> 'dritte'; ending 'en' for the weak dative: 'am dritten März'."""
    return ordinal_stem_de(n) + ending


# --------------------------------------------------------------------------------------
# Lexicon. Each German noun carries its gender so that articles agree with it.
# --------------------------------------------------------------------------------------

_DEFINITE = {
    'nom': {'m': 'der', 'f': 'die', 'n': 'das'},
    'acc': {'m': 'den', 'f': 'die', 'n': 'das'},
    'dat': {'m': 'dem', 'f': 'der', 'n': 'dem'},
}
_INDEFINITE = {
    'nom': {'m': 'ein', 'f': 'eine', 'n': 'ein'},
    'acc': {'m': 'einen', 'f': 'eine', 'n': 'ein'},
    'dat': {'m': 'einem', 'f': 'einer', 'n': 'einem'},
}


@dataclasses.dataclass(frozen=True)
class Noun:
    en: str
    en_plural: str
    de: str
    gender: str  # m / f / n
    de_plural: str
    de_dative_plural: str = ''

    def the_de(self, case: str) -> str:
        return f'{_DEFINITE[case][self.gender]} {self.de}'


@dataclasses.dataclass(frozen=True)
class Verb:
    """An intransitive event verb; German separable verbs split in main clauses."""

    en: str  # third person singular
    de_finite: str
    de_particle: str = ''

    @property
    def de_final(self) -> str:  # verb-final form of a subordinate clause
        return self.de_particle + self.de_finite


_ARRIVE = Verb('arrives', 'kommt', 'an')
_LEAVE = Verb('leaves', 'fährt', 'ab')
_FLY_OFF = Verb('departs', 'fliegt', 'ab')
_BEGIN = Verb('begins', 'beginnt')
_END = Verb('ends', 'endet')
_START = Verb('starts', 'fängt', 'an')

# (noun, verbs it takes)
_EVENTS = (
    (Noun('train', 'trains', 'Zug', 'm', 'Züge'), (_ARRIVE, _LEAVE)),
    (Noun('bus', 'buses', 'Bus', 'm', 'Busse'), (_ARRIVE, _LEAVE)),
    (Noun('ferry', 'ferries', 'Fähre', 'f', 'Fähren'), (_ARRIVE, _LEAVE)),
    (Noun('flight', 'flights', 'Flug', 'm', 'Flüge'), (_ARRIVE, _FLY_OFF)),
    (Noun('meeting', 'meetings', 'Sitzung', 'f', 'Sitzungen'), (_BEGIN, _END, _START)),
    (Noun('lecture', 'lectures', 'Vorlesung', 'f', 'Vorlesungen'), (_BEGIN, _END, _START)),
    (Noun('exam', 'exams', 'Prüfung', 'f', 'Prüfungen'), (_BEGIN, _END, _START)),
    (Noun('concert', 'concerts', 'Konzert', 'n', 'Konzerte'), (_BEGIN, _END, _START)),
    (Noun('match', 'matches', 'Spiel', 'n', 'Spiele'), (_BEGIN, _END, _START)),
    (Noun('film', 'films', 'Film', 'm', 'Filme'), (_BEGIN, _END, _START)),
    (Noun('course', 'courses', 'Kurs', 'm', 'Kurse'), (_BEGIN, _END, _START)),
    (Noun('party', 'parties', 'Feier', 'f', 'Feiern'), (_BEGIN, _END, _START)),
)
_GATHERINGS = tuple(noun for noun, verbs in _EVENTS if _BEGIN in verbs)

_ITEMS = (
    Noun('ticket', 'tickets', 'Fahrkarte', 'f', 'Fahrkarten'),
    Noun('book', 'books', 'Buch', 'n', 'Bücher'),
    Noun('coffee', 'coffees', 'Kaffee', 'm', 'Kaffees'),
    Noun('room', 'rooms', 'Zimmer', 'n', 'Zimmer'),
    Noun('bicycle', 'bicycles', 'Fahrrad', 'n', 'Fahrräder'),
    Noun('lamp', 'lamps', 'Lampe', 'f', 'Lampen'),
    Noun('watch', 'watches', 'Uhr', 'f', 'Uhren'),
    Noun('chair', 'chairs', 'Stuhl', 'm', 'Stühle'),
    Noun('umbrella', 'umbrellas', 'Regenschirm', 'm', 'Regenschirme'),
    Noun('suitcase', 'suitcases', 'Koffer', 'm', 'Koffer'),
    Noun('parcel', 'parcels', 'Paket', 'n', 'Pakete'),
    Noun('table', 'tables', 'Tisch', 'm', 'Tische'),
)

_PEOPLE = (
    Noun('passenger', 'passengers', 'Fahrgast', 'm', 'Fahrgäste'),
    Noun('child', 'children', 'Kind', 'n', 'Kinder'),
    Noun('woman', 'women', 'Frau', 'f', 'Frauen'),
    Noun('guest', 'guests', 'Gast', 'm', 'Gäste'),
    Noun('student', 'students', 'Student', 'm', 'Studenten'),
    Noun('tourist', 'tourists', 'Tourist', 'm', 'Touristen'),
)

_DURATIONS = (
    Noun('minute', 'minutes', 'Minute', 'f', 'Minuten', 'Minuten'),
    Noun('hour', 'hours', 'Stunde', 'f', 'Stunden', 'Stunden'),
    Noun('day', 'days', 'Tag', 'm', 'Tage', 'Tagen'),
    Noun('week', 'weeks', 'Woche', 'f', 'Wochen', 'Wochen'),
    Noun('month', 'months', 'Monat', 'm', 'Monate', 'Monaten'),
    Noun('year', 'years', 'Jahr', 'n', 'Jahre', 'Jahren'),
)

# (English main clause, German main clause, German conjunction, English conjunction)
_REPORTERS = (
    ('I know', 'Ich weiß', 'that', 'dass'),
    ('She says', 'Sie sagt', 'that', 'dass'),
    ('He thinks', 'Er glaubt', 'that', 'dass'),
    ('We hope', 'Wir hoffen', 'that', 'dass'),
    ('They told us', 'Sie haben uns gesagt', 'that', 'dass'),
    ('Nobody knows whether', 'Niemand weiß', '', 'ob'),
    ('I am not sure whether', 'Ich bin nicht sicher', '', 'ob'),
    ('Can you tell me whether', 'Kannst du mir sagen', '', 'ob'),
)

# (English subject + verb, German subject + finite verb) of "waiting for ... since".
_WAITERS = (
    ('We have', 'Wir warten'),
    ('I have', 'Ich warte'),
    ('She has', 'Sie wartet'),
    ('He has', 'Er wartet'),
    ('They have', 'Sie warten'),
)

_PLACES = (  # (English, German dative phrase after "in"/"an"), for "live in"
    ('the town', 'in der Stadt'),
    ('the region', 'in der Region'),
    ('the valley', 'im Tal'),
    ('the district', 'im Bezirk'),
    ('the country', 'im Land'),
)

_VEHICLES = tuple(noun for noun, verbs in _EVENTS if _LEAVE in verbs)

_UNITS = (  # (CLDR unit, English template, German template, nouns for {en}/{De})
    ('mass-kilogram', 'The {en} weighs {x}.', '{De} wiegt {x}.', _ITEMS),
    ('length-kilometer', 'We drove {x} on {weekday}.', 'Wir sind am {wochentag} {x} gefahren.', ()),
    (
        'length-meter',
        'The {en} is {x} away from the station.',
        '{De} ist {x} vom Bahnhof entfernt.',
        _VEHICLES,
    ),
    (
        'volume-liter',
        'She drank {x} of water on {weekday}.',
        'Sie hat am {wochentag} {x} Wasser getrunken.',
        (),
    ),
    ('temperature-celsius', 'On {weekday} it was {x}.', 'Am {wochentag} waren es {x}.', ()),
    (
        'speed-kilometer-per-hour',
        'The speed limit on the bridge is {x}.',
        'Die Höchstgeschwindigkeit auf der Brücke beträgt {x}.',
        (),
    ),
)

_CURRENCIES = ('EUR', 'USD', 'GBP')


def _plain_spaces(text: str) -> str:
    return text.replace('\u202f', ' ').replace('\xa0', ' ')


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def _weekday_names(locale: str) -> list[str]:
    names = babel_dates.get_day_names('wide', locale=locale)
    return [names[i] for i in range(7)]  # Monday first, like date.weekday()


def _month_names(locale: str) -> list[str]:
    names = babel_dates.get_month_names('wide', locale=locale)
    return [names[i] for i in range(1, 13)]


_WEEKDAYS_EN = _weekday_names('en')
_WEEKDAYS_DE = _weekday_names('de')
_MONTHS_EN = _month_names('en')
_MONTHS_DE = _month_names('de')


# --------------------------------------------------------------------------------------
# Random pieces. Every draw goes through one numpy Generator so the corpus is a pure
# function of the seed.
# --------------------------------------------------------------------------------------


def _pick(rng: np.random.Generator, options):
    return options[int(rng.integers(len(options)))]


def _date(rng: np.random.Generator) -> datetime.date:
    start = datetime.date(1950, 1, 1).toordinal()
    end = datetime.date(2049, 12, 31).toordinal()
    return datetime.date.fromordinal(int(rng.integers(start, end + 1)))


def _time(rng: np.random.Generator) -> datetime.time:
    return datetime.time(int(rng.integers(24)), 5 * int(rng.integers(12)))


def _time_en(t: datetime.time) -> str:
    return _plain_spaces(babel_dates.format_time(t, 'short', locale='en_US'))


def _time_de(t: datetime.time) -> str:
    return babel_dates.format_time(t, 'short', locale='de_DE') + ' Uhr'


def _full_date_en(d: datetime.date, rng: np.random.Generator) -> str:
    # British and American CLDR orders both map to the one German pattern.
    return babel_dates.format_date(d, 'full', locale=_pick(rng, ('en_GB', 'en_US')))


def _full_date_de_dative(d: datetime.date) -> str:
    # "am Montag, dem 3. März 2025": the apposition takes the dative article.
    return f'{_WEEKDAYS_DE[d.weekday()]}, dem {d.day}. {_MONTHS_DE[d.month - 1]} {d.year}'


def _count(rng: np.random.Generator, high: int) -> int:
    """A count in [2, high), log-uniform so small and large numbers both appear.

    Counts like 101 are left out: German "hunderteins" changes form before a noun.
    """
    while True:
        n = int(np.exp(rng.uniform(np.log(2), np.log(high))))
        if n % 100 != 1 and 2 <= n < high:
            return n


def _amount(rng: np.random.Generator) -> float:
    cents = int(np.exp(rng.uniform(np.log(50), np.log(500_000))))
    return round(cents / 100, 2) if rng.random() < 0.7 else float(cents // 100)


# --------------------------------------------------------------------------------------
# Templates: each draws its pieces and returns (English, German).
# --------------------------------------------------------------------------------------


def _event_on_date(rng):
    noun = _pick(rng, _GATHERINGS)
    d = _date(rng)
    en_verb, de_verb = _pick(rng, (('is', 'ist'), ('was', 'war'), ('will be', 'wird')))
    de_tail = ', sein' if de_verb == 'wird' else ''  # the apposition closes with a comma
    en = f'The {noun.en} {en_verb} on {_full_date_en(d, rng)}.'
    de = f'{_cap(noun.the_de("nom"))} {de_verb} am {_full_date_de_dative(d)}{de_tail}.'
    return en, de


def _event_at_time(rng):
    noun, verbs = _pick(rng, _EVENTS)
    verb = _pick(rng, verbs)
    t = _time(rng)
    particle = f' {verb.de_particle}' if verb.de_particle else ''
    en = f'The {noun.en} {verb.en} at {_time_en(t)}.'
    de = f'{_cap(noun.the_de("nom"))} {verb.de_finite} um {_time_de(t)}{particle}.'
    return en, de


def _reported_event(rng):
    en_head, de_head, en_conj, de_conj = _pick(rng, _REPORTERS)
    noun, verbs = _pick(rng, _EVENTS)
    verb = _pick(rng, verbs)
    t = _time(rng)
    weekday = int(rng.integers(7))
    en_that = f' {en_conj}' if en_conj else ''
    mark = '?' if en_head.startswith('Can') else '.'
    # English puts the time before the day; German puts the day first, verb last.
    en = (
        f'{en_head}{en_that} the {noun.en} {verb.en} at {_time_en(t)} '
        f'on {_WEEKDAYS_EN[weekday]}{mark}'
    )
    de = (
        f'{de_head}, {de_conj} {noun.the_de("nom")} am {_WEEKDAYS_DE[weekday]} '
        f'um {_time_de(t)} {verb.de_final}{mark}'
    )
    return en, de


def _price(rng):
    item = _pick(rng, _ITEMS)
    currency = _pick(rng, _CURRENCIES)
    amount = _amount(rng)
    price_en = _plain_spaces(
        babel_numbers.format_currency(
            amount, currency, locale='en_GB' if currency == 'GBP' else 'en_US'
        )
    )
    price_de = _plain_spaces(babel_numbers.format_currency(amount, currency, locale='de_DE'))
    form = int(rng.integers(3))
    if form == 0:
        return f'The {item.en} costs {price_en}.', f'{_cap(item.the_de("nom"))} kostet {price_de}.'
    if form == 1:  # perfect tense: the participle closes the German clause
        return (
            f'The {item.en} cost {price_en}.',
            f'{_cap(item.the_de("nom"))} hat {price_de} gekostet.',
        )
    en_head, de_head, en_conj, de_conj = _pick(rng, _REPORTERS[:5])
    return (
        f'{en_head} {en_conj} the {item.en} costs {price_en}.',
        f'{de_head}, {de_conj} {item.the_de("nom")} {price_de} kostet.',
    )


def _people_waiting(rng):
    person = _pick(rng, _PEOPLE)
    vehicle = _pick(rng, _VEHICLES + tuple(noun for noun, _ in _EVENTS[4:]))
    n = 1 if rng.random() < 0.15 else _count(rng, 1000)
    target = f'auf {vehicle.the_de("acc")}'
    if n == 1:
        en_subject = f'One {person.en} is'
        de_subject = f'{_cap(_INDEFINITE["nom"][person.gender])} {person.de} wartet'
    else:
        en_subject = f'{_cap(number_to_words_en(n))} {person.en_plural} are'
        de_subject = f'{_cap(number_to_words_de(n))} {person.de_plural} warten'
    return f'{en_subject} waiting for the {vehicle.en}.', f'{de_subject} {target}.'


def _waiting_since(rng):
    en_subject, de_subject = _pick(rng, _WAITERS)
    unit = _pick(rng, _DURATIONS)
    noun, _ = _pick(rng, _EVENTS)
    n = 1 if rng.random() < 0.15 else _count(rng, 100)
    if n == 1:
        en_span, de_span = f'one {unit.en}', f'{_INDEFINITE["dat"][unit.gender]} {unit.de}'
    else:
        en_span = f'{number_to_words_en(n)} {unit.en_plural}'
        de_span = f'{number_to_words_de(n)} {unit.de_dative_plural}'
    # English present perfect progressive; German present tense with "seit" + dative,
    # and the duration moves before the object.
    return (
        f'{en_subject} been waiting for the {noun.en} for {en_span}.',
        f'{de_subject} seit {de_span} auf {noun.the_de("acc")}.',
    )


def _floor(rng):
    noun = _pick(rng, _GATHERINGS)
    floor = int(rng.integers(1, 41))
    t = _time(rng)
    floor_en, floor_de = ordinal_words_en(floor), ordinal_words_de(floor, 'en')
    if rng.random() < 0.5:
        return (
            f'The {noun.en} takes place on the {floor_en} floor at {_time_en(t)}.',
            f'{_cap(noun.the_de("nom"))} findet um {_time_de(t)} im {floor_de} Stock statt.',
        )
    en_head, de_head, en_conj, de_conj = _pick(rng, _REPORTERS)
    en_that = f' {en_conj}' if en_conj else ''
    mark = '?' if en_head.startswith('Can') else '.'
    return (
        f'{en_head}{en_that} the {noun.en} takes place on the {floor_en} floor{mark}',
        f'{de_head}, {de_conj} {noun.the_de("nom")} im {floor_de} Stock stattfindet{mark}',
    )


def _day_of_month(rng):
    d = _date(rng)
    day_en = ordinal_words_en(d.day)
    month_en, month_de = _MONTHS_EN[d.month - 1], _MONTHS_DE[d.month - 1]
    form = int(rng.integers(3))
    if form == 0:  # nominative: weak ending -e after "der"
        return (
            f'Today is the {day_en} of {month_en}.',
            f'Heute ist der {ordinal_words_de(d.day, "e")} {month_de}.',
        )
    noun, _ = _pick(rng, _EVENTS)
    if form == 1:  # dative after "am": weak ending -en
        return (
            f'The {noun.en} is on the {day_en} of {month_en}.',
            f'{_cap(noun.the_de("nom"))} ist am {ordinal_words_de(d.day, "en")} {month_de}.',
        )
    # "verschieben auf" takes the accusative; the weak ending is -en again
    return (
        f'The {noun.en} was postponed until the {day_en} of {month_en}.',
        (
            f'{_cap(noun.the_de("nom"))} wurde auf den {ordinal_words_de(d.day, "en")} '
            f'{month_de} verschoben.'
        ),
    )


def _measurement(rng):
    unit, en_template, de_template, nouns = _pick(rng, _UNITS)
    if unit == 'temperature-celsius':
        # +-1 degree would need singular agreement ("war es ein Grad") in German.
        value = _pick(rng, [v for v in range(-15, 40) if abs(v) != 1])
    elif rng.random() < 0.5:
        value = int(rng.integers(1, 300))
    else:
        value = round(float(rng.uniform(0.1, 300)), 1)
    weekday = int(rng.integers(7))
    x_en = _plain_spaces(babel_units.format_unit(value, unit, length='long', locale='en_US'))
    x_de = _plain_spaces(babel_units.format_unit(value, unit, length='long', locale='de_DE'))
    noun = _pick(rng, nouns) if nouns else None
    en = en_template.format(x=x_en, weekday=_WEEKDAYS_EN[weekday], en=noun and noun.en)
    de = de_template.format(
        x=x_de, wochentag=_WEEKDAYS_DE[weekday], De=noun and _cap(noun.the_de('nom'))
    )
    return en, de


def _percent(rng):
    share = round(float(rng.uniform(0.001, 0.3)), 3)
    month = int(rng.integers(12))
    p_en = _plain_spaces(
        babel_numbers.format_percent(share, locale='en_US', decimal_quantization=False)
    )
    p_de = _plain_spaces(
        babel_numbers.format_percent(share, locale='de_DE', decimal_quantization=False)
    )
    item = _pick(rng, _ITEMS)
    en_dir, de_dir = _pick(rng, (('rose', 'gestiegen'), ('fell', 'gesunken')))
    article = 'der' if item.gender == 'f' else 'des'
    return (
        f'The price of the {item.en} {en_dir} by {p_en} in {_MONTHS_EN[month]}.',
        (
            f'Der Preis {article} {item.de}{_genitive_suffix(item)} ist im '
            f'{_MONTHS_DE[month]} um {p_de} {de_dir}.'
        ),
    )


def _genitive_suffix(noun: Noun) -> str:
    # Strong masculine and neuter nouns take -s (-es after a sibilant) in the genitive.
    if noun.gender == 'f':
        return ''
    return 'es' if noun.de.endswith(('s', 'ß', 'z', 'x')) else 's'


def _number_in_words(rng):
    n = int(np.exp(rng.uniform(0, np.log(10**7))))
    digits_en = babel_numbers.format_decimal(n, locale='en_US')
    digits_de = _plain_spaces(babel_numbers.format_decimal(n, locale='de_DE'))
    return (
        f'The number {digits_en} is written {number_to_words_en(n)}.',
        f'Die Zahl {digits_de} schreibt man {number_to_words_de(n)}.',
    )


def _population(rng):
    en_place, de_place = _pick(rng, _PLACES)
    n = _count(rng, 10**7)
    # Large counts are rounded the way people say them, so words stay readable.
    n = int(float(f'{n:.2g}'))
    # Fronting the place puts the German verb second, before its subject.
    return (
        f'About {number_to_words_en(n)} people live in {en_place}.',
        f'{_cap(de_place)} leben etwa {number_to_words_de(n)} Menschen.',
    )


def _weekly_opening(rng):
    weekday = int(rng.integers(7))
    t = _time(rng)
    place_en, place_de, gender = _pick(
        rng,
        (
            ('shop', 'Laden', 'm'),
            ('library', 'Bibliothek', 'f'),
            ('museum', 'Museum', 'n'),
            ('bakery', 'Bäckerei', 'f'),
            ('pool', 'Schwimmbad', 'n'),
            ('market', 'Markt', 'm'),
        ),
    )
    verb_en, verb_de = _pick(rng, (('opens', 'öffnet'), ('closes', 'schließt')))
    # German makes the weekday an adverb: "montags" for "on Mondays".
    return (
        f'The {place_en} {verb_en} at {_time_en(t)} on {_WEEKDAYS_EN[weekday]}s.',
        (
            f'{_cap(_DEFINITE["nom"][gender])} {place_de} {verb_de} '
            f'{_WEEKDAYS_DE[weekday].lower()}s um {_time_de(t)}.'
        ),
    )


TEMPLATES: tuple[Callable[[np.random.Generator], tuple[str, str]], ...] = (
    _event_on_date,
    _event_at_time,
    _reported_event,
    _price,
    _people_waiting,
    _waiting_since,
    _floor,
    _day_of_month,
    _measurement,
    _percent,
    _number_in_words,
    _population,
    _weekly_opening,
)


def generate_pairs(num_pairs: int, seed: int = DEFAULT_SEED) -> list[tuple[str, str]]:
    """`num_pairs` (English, German) pairs, unique on each side, in generation order."""
    rng = np.random.default_rng(seed)
    seen_en, seen_de, pairs = set(), set(), []
    attempts, max_attempts = 0, 20 * num_pairs + 1000
    while len(pairs) < num_pairs:
        attempts += 1
        if attempts > max_attempts:
            raise RuntimeError(
                f'{NAME}: only {len(pairs)} unique pairs after {attempts} draws; '
                f'the templates cannot supply {num_pairs}'
            )
        en, de = _pick(rng, TEMPLATES)(rng)
        if en in seen_en or de in seen_de:
            continue
        seen_en.add(en)
        seen_de.add(de)
        pairs.append((en, de))
    return pairs


def build_corpus(
    sizes: dict[str, int] | None = None, seed: int = DEFAULT_SEED
) -> dict[str, dict[str, list[str]]]:
    """{split: {'en': lines, 'de': lines}} for the splits train / val / test.

    Test and validation are drawn first, so their lines do not change when only the
    training size changes.
    """
    sizes = {**DEFAULT_SIZES, **(sizes or {})}
    unknown = set(sizes) - set(SPLITS)
    if unknown:
        raise ValueError(f'{NAME} has the splits {SPLITS}, got sizes for {sorted(unknown)}')
    order = ('test', 'val', 'train')
    pairs = generate_pairs(sum(sizes[s] for s in order), seed)
    corpus, start = {}, 0
    for split in order:
        chunk = pairs[start : start + sizes[split]]
        start += sizes[split]
        corpus[split] = {'en': [en for en, _ in chunk], 'de': [de for _, de in chunk]}
    return {split: corpus[split] for split in SPLITS}
