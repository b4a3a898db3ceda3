"""The answer path, one module per step, read top to bottom in `chat.rag.answer`:

retrieve  → the bot's knowledge bases searched (hybrid), passages numbered as sources
prompt    → persona, grounding rules, the sources fenced as untrusted data, the question
generate  → the model's answer streamed through the LiteLLM gateway (`inference.gateway`)
ground    → the evidence check: citations to missing sources stripped, each sentence graded
cite      → the citation rows: the verbatim quote of each cited source, on its exact page
"""
