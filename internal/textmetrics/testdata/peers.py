"""Reference values for textmetrics' cross-check tests.

Usage: python3 peers.py MODE < cases.json > results.json

  bleu    [[pred, label], ...]  -> nltk sentence_bleu([list(label)], list(pred),
                                   smoothing_function=SmoothingFunction().method3)
  rouge   [[hyp, ref], ...]     -> LLaMA Factory's ROUGE branch with rouge_chinese on
                                   already space-joined words: [[r1, r2, rl], ...] (fractions)
  jieba   [text, ...]           -> list(jieba.cut(text)) for each text
  llamafactory [[pred, label, hyp, ref], ...]
                                -> ComputeSimilarity's loop (hyp/ref: the space-joined words
                                   of pred/label), then {metric: float(np.mean(values))}
  numeric {"fsum": [[x, ...], ...], "mean": [[x, ...], ...], "round4": [x, ...]}
                                -> math.fsum, float(numpy.mean), round(x, 4) of each

Each mode imports only the module it needs; the Go test checks that the module
imports before running a mode.
"""
import json
import math
import sys


def bleu(cases):
    from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu

    out = []
    for pred, label in cases:
        score = sentence_bleu([list(label)], list(pred), smoothing_function=SmoothingFunction().method3)
        out.append(float(score))
    return out


def rouge(cases):
    from rouge_chinese import Rouge

    out = []
    for hyp, ref in cases:
        # As in LLaMA Factory's ComputeSimilarity, with hyp/ref already " ".join(words).
        if len(hyp.split()) == 0 or len(ref.split()) == 0:
            out.append([0.0, 0.0, 0.0])
            continue
        s = Rouge().get_scores(hyp, ref)[0]
        out.append([s["rouge-1"]["f"], s["rouge-2"]["f"], s["rouge-l"]["f"]])
    return out


def jieba_cut(cases):
    import logging

    import jieba

    jieba.setLogLevel(logging.WARNING)
    return [list(jieba.cut(text)) for text in cases]


def llamafactory(cases):
    # LLaMA Factory src/llamafactory/train/sft/metric.py, ComputeSimilarity.__call__,
    # with " ".join(jieba.cut(x)) replaced by the words the Go side passes in.
    import numpy as np
    from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu
    from rouge_chinese import Rouge

    score_dict = {"rouge-1": [], "rouge-2": [], "rouge-l": [], "bleu-4": []}
    for pred, label, hyp, ref in cases:
        if len(hyp.split()) == 0 or len(ref.split()) == 0:
            result = {"rouge-1": {"f": 0.0}, "rouge-2": {"f": 0.0}, "rouge-l": {"f": 0.0}}
        else:
            result = Rouge().get_scores(hyp, ref)[0]
        for k, v in result.items():
            score_dict[k].append(round(v["f"] * 100, 4))
        bleu_score = sentence_bleu([list(label)], list(pred), smoothing_function=SmoothingFunction().method3)
        score_dict["bleu-4"].append(round(bleu_score * 100, 4))
    return {k: float(np.mean(v)) for k, v in score_dict.items()}


def numeric(cases):
    import numpy as np

    return {
        "fsum": [math.fsum(xs) for xs in cases["fsum"]],
        "mean": [float(np.mean(xs)) for xs in cases["mean"]],
        "round4": [round(x, 4) for x in cases["round4"]],
    }


def main():
    modes = {"bleu": bleu, "rouge": rouge, "jieba": jieba_cut, "llamafactory": llamafactory, "numeric": numeric}
    if len(sys.argv) != 2 or sys.argv[1] not in modes:
        sys.exit("usage: peers.py {" + "|".join(modes) + "} < cases.json")
    cases = json.load(sys.stdin)
    json.dump(modes[sys.argv[1]](cases), sys.stdout)


if __name__ == "__main__":
    main()
