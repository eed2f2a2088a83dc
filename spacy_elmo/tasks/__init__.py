"""Downstream evaluations of ELMo and the project report (issue #5).

- `stsb`: STS Benchmark, Spearman of the cosine of mean-pooled vectors, per layer (no training).
- `wic`: Word-in-Context, accuracy of a cosine threshold fitted on train, per layer.
- `polysemy_check`: same-sense vs different-sense cosine of hand-written word pairs, through the
  `elmo` component at its default settings (issue 17; data in `data/polysemy_pairs.tsv`).
- `ner`: CoNLL-2003 reading, conversion to spaCy DocBin, span P/R/F1 per entity type.
- `pretrain_corpus`: the pretraining text (WikiText-103 raw, else a named local fallback).
- `textcat`: labelled TSV files -> seeded, stratified train/dev/test DocBins; accuracy, macro F1.
- `grid`: resumable grids of spaCy runs (arms with/without ELMo and static vectors, nested
  learning-curve subsets, seeds); `static_vectors`: floret vectors from the pretraining text;
  `evidence`: their report rows and the learning curve (docs/evidence.md).
- `report` (+ `table`, `plots`, `curves`, `mixweights`, `polysemy`): every metrics file into one
  Markdown table, a JSON file and PNG plots.
- helpers: `stats` (Spearman with ties, cosine; numpy only), `features` (biLM vectors in
  chunks), `tokens` (spaCy's English word split), `_io` (atomic JSON).

The biLM evaluations need only `spacy_elmo.bilm`; the spaCy pipeline is only loaded to read a
trained component's learned scalar mix.
"""
