"""Names shared by the labels tests (imported as a plain module; conftest is not importable
by name once several test folders have one)."""

MID = "mid_block.attentions.0/k32"
UP = "up_blocks.1.attentions.0/k16"
