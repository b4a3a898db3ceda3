"""The models, in process and behind LiteLLM: the bottom package that kb and chat both call.

- `gateway`: LiteLLM kept offline, and the in-process `local` provider it serves models from;
- `embedder`: the local embedder (all-MiniLM-L6-v2, int8 ONNX) behind `local/minilm`;
- `extractive`: the local extractive answerer behind `local/extractive`;
- `text`: the text toolkit (fold, stem, tokenize, term rarity, sentence splitting) shared by the
  answerer and chat's grounding check.

It imports no app (not accounts, kb, chat or config) and not Django: callers pass what it needs.
"""
