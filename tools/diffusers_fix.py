"""diffusers_fix.py -- the one workaround every script here applies before it runs diffusers'
UNet2DModel on the CPU: patch().

diffusers 0.31's Attention.get_attention_scores, given no mask, hands torch.baddbmm an uninitialised
torch.empty(...) with beta 0. Debian's torch 1.13 does not always ignore that input on the CPU: a NaN
left in recycled memory comes out as NaN (measured: a NaN-filled input with beta 0 gave NaN scores in
1544 of 12000 small baddbmm calls; a zero input with beta 1 in none). Whole UNet outputs then turn NaN,
depending on what the allocator hands back: seen on an Intel Xeon with AMX (2026-12-01) and in CI on an
AMD EPYC Zen 3 (2026-12-07), 50 calls in a row. patch() gives get_attention_scores a zero mask instead,
so baddbmm adds zeros with beta 1: the same scores, and nothing uninitialised is read.
"""


def patch():
    """Makes diffusers' attention read no uninitialised memory (idempotent)."""
    import torch
    from diffusers.models.attention_processor import Attention
    if getattr(Attention, "_ddpm_zero_mask", False):
        return
    scores = Attention.get_attention_scores

    def zero_mask_scores(self, query, key, attention_mask=None):
        if attention_mask is None:
            attention_mask = torch.zeros(query.shape[0], query.shape[1], key.shape[1], dtype=query.dtype,
                                         device=query.device)
        return scores(self, query, key, attention_mask)
    Attention.get_attention_scores = zero_mask_scores
    Attention._ddpm_zero_mask = True
