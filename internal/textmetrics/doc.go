// Package textmetrics computes the text-similarity scores LLaMA Factory's
// sft stage reports for predictions (predict_with_generate): BLEU-4 and
// ROUGE-1, ROUGE-2 and ROUGE-L F-scores, in percent, averaged over samples.
//
// It reproduces ComputeSimilarity in LLaMA Factory's
// src/llamafactory/train/sft/metric.py. For each (prediction, label) pair:
//
//   - BLEU-4 is nltk's sentence_bleu([list(label)], list(pred),
//     smoothing_function=SmoothingFunction().method3) on Unicode code
//     points: uniform weights 0.25, clipped n-gram precision, brevity
//     penalty, NIST geometric smoothing (the k-th zero-match order gets
//     1/(2^k * denominator)), 0 when no character matches;
//   - ROUGE-1/2/L are the "f" values of rouge_chinese's
//     Rouge().get_scores(" ".join(words(pred)), " ".join(words(label))),
//     or 0 when either text is empty or all whitespace. rouge_chinese
//     (1.0.3) counts distinct n-grams (a set, not clipped counts) and its
//     "summary-level" ROUGE-L is one LCS over all words of each side;
//     F = 2*(P*R)/(P+R+1e-8);
//   - each score is multiplied by 100 and rounded to 4 decimal places.
//
// Corpus averages the rounded per-sample scores the way numpy.mean does
// (pairwise summation in 8192-element chunks), so for the same words the
// results are the same float64 values LLaMA Factory prints, up to a last-bit
// difference between Go's math.Log/math.Exp and the C library's, which the
// rounding to 4 places hides.
//
// The one deliberate difference is the word segmentation for ROUGE.
// LLaMA Factory uses jieba.cut; this package has no jieba (no dictionary, no
// HMM) and splits runs of CJK ideographs into single ideographs, where jieba
// would group them into dictionary words (大语言模型 is five words here,
// jieba makes fewer, e.g. 大 语言 模型). Character-level ROUGE on Chinese
// is therefore usually higher than LLaMA Factory's word-level figure, so
// lathe's Chinese ROUGE numbers are comparable with each other but not with
// LLaMA Factory's. Everything that does not depend on jieba's dictionary is
// reproduced as jieba does it:
//
//   - runs of ASCII letters and digits are words, with jieba's finalseg
//     rule [a-zA-Z0-9]+(?:\.\d+)?%? (so "3.14%" and "v1.2" are one word
//     each) and the ASCII punctuation +#&._%- between them kept as one
//     piece per run; jieba's five ASCII dictionary words (AT&T, c#, C#,
//     c++, C++) stay whole;
//   - every other character is its own word: punctuation, kana, hangul
//     syllables, fullwidth forms, accented and non-Latin letters (jieba
//     splits "café" into "caf" and "é", and so does this package), emoji;
//   - nothing is lower-cased and no punctuation is dropped (neither
//     rouge_chinese nor jieba does either); whitespace separates words and
//     is not a word, except for one rouge_chinese quirk kept on purpose: a
//     line break right after 。！？? (or a blank line) leaves an empty
//     sentence, which rouge_chinese scores as one empty-string word.
//
// Mixed ASCII-CJK dictionary words (T恤, 卡拉OK) are dictionary territory
// and split like any other text here.
//
// Texts are read as Unicode code points; an invalid UTF-8 byte reads as one
// U+FFFD (Python never meets one: its strings are already decoded). Cost is
// linear in the text except ROUGE-L's LCS, O(words(pred) * words(label)).
//
// The package does not decode token ids, strip special tokens or handle
// IGNORE_INDEX padding: callers pass the decoded prediction and label text.
// It computes no other metric (no chrF, METEOR, corpus-level BLEU or
// multi-reference scores).
package textmetrics
