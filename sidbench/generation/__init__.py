"""Generate images for a seed list into a folder or zip, resumably, one writer at a time.

Image i is a function of seed i alone (per-image generators, `sidbench.nets.seeds`;
images from `sidbench.nets.render.render_seeds`), so a run can be cut anywhere and
resumed: finished `{seed:06d}.png` files are kept (each re-checked by decoding),
missing ones are made, and the result is byte-for-byte what an uninterrupted run
writes. The modules, one idea each:

- `run`: `generate` itself: checks, then the resume/extend logic (`write_images`, shared by every
  render function);
- `t2i`: `generate_t2i`, text-to-image networks (SiD-LSG generators, DDIM teachers), caption s with seed s;
- `multistep`: a multi-step student (ADD-style) sampled at N of its recorded noise levels;
- `manifest`: `generate.json`, the network fingerprint and settings an output was made with;
- `lock`: one writer per output (`OUT.lock`);
- `writer`: threaded PNG writing and full-disk messages;
- `zipout`: staging in `OUT.zip.partial/` and deterministic packing of `.zip` outputs;
- `summary`: `GenerateSummary`, what a call did.
- `pairs`: DMD's teacher (noise, image) pairs, per seed, in hash-checked safetensors shards.
"""

from sidbench.generation.manifest import MANIFEST, network_fingerprint
from sidbench.generation.run import generate, write_images
from sidbench.generation.summary import GenerateSummary
from sidbench.generation.t2i import T2IPlan, generate_t2i
from sidbench.nets.sampler import SAMPLERS

__all__ = ["MANIFEST", "SAMPLERS", "GenerateSummary", "T2IPlan", "generate", "generate_t2i",
           "network_fingerprint", "write_images"]
