"""Build tiny real models locally (no hub): a BPE tokenizer trained on the spot with a ChatML
template, and a 2-layer Llama. Tests and benchmarks' smoke modes use these."""
from __future__ import annotations

from pathlib import Path

CHATML = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

_CORPUS = [
    "You are a helpful assistant. Call tools when they help.",
    '<tool_call>\n{"name": "database_query", "arguments": {"table": "orders", "limit": 5}}\n</tool_call>',
    "<tools> </tools> <tool_response> </tool_response> # Tools function arguments name type object string integer",
    "Show me the latest orders. Read the file src/app.py and run the tests. Deploy service api to staging.",
    "The quick brown fox jumps over the lazy dog 0123456789 {}[]\":,._-/ ",
]


def build_tokenizer(out_dir: str | Path, vocab_size: int = 600):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(_CORPUS * 20, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|im_start|>", eos_token="<|im_end|>",
                                   pad_token="<|endoftext|>", unk_token="<|endoftext|>")
    fast.chat_template = CHATML
    fast.save_pretrained(out_dir)
    return fast


def build_tiny_model(out_dir: str | Path, *, layers: int = 2, hidden: int = 32, seed: int = 0) -> Path:
    """A real (random) LlamaForCausalLM saved with its tokenizer: trains and generates in ms."""
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tok = build_tokenizer(out)
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=hidden, intermediate_size=hidden * 2, num_hidden_layers=layers,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                      tie_word_embeddings=True)
    model = LlamaForCausalLM(cfg)
    model.generation_config = GenerationConfig(bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                                               pad_token_id=tok.pad_token_id)
    model.save_pretrained(out)
    return out


def scramble(model, *, std: float = 0.5, seed: int = 1):
    """Large random weights in place: a random model's greedy replies then vary from token to token
    and sit far from ties (at its init scale every reply repeats one token)."""
    import torch

    torch.manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, std)
    return model


def lora_with_random_b(path: str | Path, *, seed: int = 1):
    """The model at ``path`` (fp32, frozen) through PEFT, as training attaches LoRA (r 4 on every
    linear layer), with its B matrices drawn at random so the adapter changes the outputs: the
    starting point of the tests that compare two heads or forwards of one model."""
    import torch
    from transformers import AutoModelForCausalLM

    from trajtune.training import attach_lora

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    for p in model.parameters():
        p.requires_grad_(False)
    model, _ = attach_lora(model, r=4, alpha=8, dropout=0.0, target_modules=["all-linear"], fallback="none")
    for name, p in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.1)
    return model


def build_noisy_model(src: str | Path, out_dir: str | Path, *, std: float = 0.5, seed: int = 1) -> Path:
    """A copy of the tiny model at ``src`` with :func:`scramble`d weights, saved with its tokenizer."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = Path(out_dir)
    scramble(AutoModelForCausalLM.from_pretrained(src), std=std, seed=seed).save_pretrained(out)
    AutoTokenizer.from_pretrained(src).save_pretrained(out)
    return out


_EMBED_WORDS = (
    "the a an of to in for on with and or is it this that me my please can you find get run read write list "
    "file files folder text search docs query sql table logs service deploy restart weather city tests test "
    "open show fetch recent lines rename function class variable everywhere suite path parameters commit "
    "branch create delete update send email message user order orders price stock report status build image"
).split()


def build_tiny_embedder(out_dir: str | Path, *, hidden: int = 32, layers: int = 2, seed: int = 0,
                        words: tuple[str, ...] | None = None) -> Path:
    """A real (random) 2-layer BERT with a WordPiece tokenizer built from a small vocabulary, as a
    sentence-transformers folder (transformer + mean pooling + normalise): trains in milliseconds."""
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.base.modules import Normalize, Transformer
    from sentence_transformers.sentence_transformer.modules import Pooling
    from transformers import BertConfig, BertModel, BertTokenizerFast

    out = Path(out_dir)
    raw = out.parent / f"{out.name}-hf"
    raw.mkdir(parents=True, exist_ok=True)
    chars = "abcdefghijklmnopqrstuvwxyz0123456789"
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *dict.fromkeys(words or _EMBED_WORDS),
             *chars, *"_-.,:;?!'\"()/", *(f"##{c}" for c in chars + "_")]
    (raw / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tok = BertTokenizerFast(vocab_file=str(raw / "vocab.txt"), do_lower_case=True)
    torch.manual_seed(seed)
    BertModel(BertConfig(vocab_size=len(vocab), hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=2,
                         intermediate_size=hidden * 2, max_position_embeddings=256)).save_pretrained(raw)
    tok.save_pretrained(raw)
    tr = Transformer(str(raw), max_seq_length=128)
    SentenceTransformer(modules=[tr, Pooling(tr.get_embedding_dimension(), "mean"), Normalize()], device="cpu").save(str(out))
    return out
