"""Hidden-layer activations of the MLP: a small registry by name (``ModelConfig.activation``).

``torch_ref.model.ACTIVATIONS`` mirrors each one. GELU is the *exact* form,
``x * Phi(x)`` with the normal CDF (``jax.nn.gelu(approximate=False)``, torch's ``nn.GELU()``
default): JAX defaults to the tanh approximation and torch does not, so both sides name it.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import jax
import jax.numpy as jnp

ACTIVATIONS: dict[str, Callable] = {
    "tanh": jnp.tanh,  # the seed's
    "relu": jax.nn.relu,
    "gelu": partial(jax.nn.gelu, approximate=False),
    "silu": jax.nn.silu,
    "sin": jnp.sin,
}
