#!/usr/bin/env python3
"""Writes testdata/stories/{train,eval}.jsonl: story openings with a cheerful
(chosen) and a sad (rejected) continuation, in the simple words of the
TinyStories models in ../shared/models (plain ASCII letters, commas and
full stops: TinyStories-656K has no byte fallback). Deterministic: run it
again to get the same files.

The held-out split uses names, places and continuations that no training
pair uses, so held-out accuracy measures a preference for cheerful endings,
not memorised ones.
"""
import hashlib
import json
import os
import random

names = ["Lily", "Tom", "Mia", "Ben", "Sue", "Max", "Anna", "Sam", "Lucy", "Tim", "Zoe", "Jack",
         "Emma", "Leo", "Ruby", "Finn", "Ella", "Joe", "Amy", "Dan"]
animals = ["a little dog", "a small cat", "a baby bird", "a fluffy bunny", "a tiny frog", "a big bear",
           "a happy duck", "a brown horse", "a little mouse", "a young fox"]
places = ["the park", "the garden", "the forest", "the beach", "the farm", "the lake", "the hill",
          "the town", "the yard", "the meadow"]
things = ["a red ball", "a shiny stone", "a blue kite", "a big box", "a toy car", "a pretty flower",
          "a small boat", "a yellow hat", "a new book", "a little drum"]

openings = [
    "Once upon a time, there was {who} named {name}. One day, {name} went to {place}.",
    "{name} was {who} who lived near {place}. Every morning, {name} liked to walk there.",
    "One sunny day, {name} found {thing} in {place}. {name} picked it up and looked at it.",
    "There once was {who} named {name}. {name} had {thing} and took it to {place}.",
    "It was a warm day, and {name} wanted to play in {place} with {thing}.",
    "{name} and a friend went to {place}. They saw {thing} under a tree.",
]

cheerful = [
    "{name} smiled and laughed. {name} played with new friends all day, and everyone was very happy.",
    "The sun was bright and the birds sang. {name} felt so happy and gave a big hug to a friend.",
    "{name} shared {thing} with the other kids. They had lots of fun together and laughed a lot.",
    "{name} danced and sang a happy song. At the end of the day, {name} was glad and full of joy.",
    "A kind friend came to play. They ran and jumped and had the best day ever. {name} loved it.",
    "{name} made a new friend and they played a fun game. They smiled and were very happy.",
    "Mom came and said she was proud. {name} felt warm and happy and smiled all the way home.",
    "They had a picnic with cake and juice. Everyone laughed and {name} said it was a great day.",
]
sad = [
    "{name} lost {thing} and could not find it. {name} cried and felt very sad and alone.",
    "It started to rain and {name} got cold and wet. {name} was sad and went home crying.",
    "{name} fell down and hurt a knee. Nobody came to help, and {name} felt sad all day.",
    "The other kids would not play with {name}. {name} sat alone and cried for a long time.",
    "{thing} broke into many pieces. {name} was very sad and could not stop crying.",
    "A big dog barked and {name} was scared. {name} ran away and cried and felt bad.",
    "{name} was sick and could not go out. {name} felt sad and lonely in bed all day.",
    "Mom was angry and said no. {name} felt sad and went to bed without a smile.",
]

def fill(s, **kw):
    s = s.format(**kw)
    return s[0].upper() + s[1:]

def pairs(rng, ns, ws, ps, ts, cs, ss, n, tag):
    out, seen = [], set()
    while len(out) < n:
        kw = dict(name=rng.choice(ns), who=rng.choice(ws), place=rng.choice(ps), thing=rng.choice(ts))
        o = rng.choice(openings)
        c, s = rng.choice(cs), rng.choice(ss)
        prompt = fill(o, **kw)
        chosen, rejected = fill(c, **kw), fill(s, **kw)
        if (prompt, chosen, rejected) in seen:
            continue
        seen.add((prompt, chosen, rejected))
        pid = hashlib.sha256(("stories|" + tag + "|" + prompt + chosen + rejected).encode()).hexdigest()[:32]
        out.append({"id": pid, "prompt": prompt, "chosen": chosen, "rejected": rejected,
                    "objective": "tone", "source": "synthetic-stories"})
    return out

rng = random.Random(1)
# held out: 4 names, 2 animals, 2 places, 2 things, 2 cheerful and 2 sad endings
train = pairs(rng, names[:16], animals[:8], places[:8], things[:8], cheerful[:6], sad[:6], 400, "train")
evalp = pairs(rng, names[16:], animals[8:], places[8:], things[8:], cheerful[6:], sad[6:], 80, "eval")
here = os.path.dirname(os.path.abspath(__file__))
for name, rows in (("train.jsonl", train), ("eval.jsonl", evalp)):
    with open(os.path.join(here, name), "w") as f:
        for r in rows:
            f.write(json.dumps(r, separators=(",", ":")) + "\n")
# prompts for sampling: openings only (held-out names and places)
with open(os.path.join(here, "prompts.txt"), "w") as f:
    for r in evalp[:40]:
        f.write(r["prompt"] + "\n")
