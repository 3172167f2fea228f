"""torch_ref: the PyTorch reference for ``jaxopt_cmp`` — same model, init, data, loop, optimizers.

Eager and deliberately plain; it exists so the tests can prove, step by step, that the compiled
JAX engine trains the seed notebook's network the way ``torch.optim`` does. Module and function
names mirror ``jaxopt_cmp``; :mod:`torch_ref.convert` moves weights between the two layouts.
"""
