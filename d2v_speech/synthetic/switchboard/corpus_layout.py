"""Where the mini Switchboard's files go: LDC roots, file names, sides, discs, sample rate."""

SAMPLE_RATE = 8000
SIDES = ("A", "B")
DISCS = ("swb1_d1", "swb1_d2", "swb1_d3", "swb1_d4")
PARTS = ("train", "swbd", "callhome")

SWBD_ROOT = "LDC97S62"
MS98_ROOT = "swb_ms98_transcriptions"
HUB5_AUDIO = "LDC2002S09/hub5e_00/english"
HUB5_REFERENCE = "LDC2002T43/2000_hub5_eng_eval_tr/reference"
STM_NAME = "hub5e00.english.000405.stm"
GLM_NAME = "en20000405_hub5.glm"
PEM_NAME = "hub5e_00.pem"
MANIFEST_NAME = "mini_switchboard.json"
STAMP_NAME = ".mini_switchboard_complete.json"
STAGING_NAME = ".mini_switchboard_staging"
LOCK_NAME = ".mini_switchboard.lock"
PARTS_DIR = ".conversations"  # per-conversation results inside staging, for resuming
OWNED_ENTRIES = (SWBD_ROOT, MS98_ROOT, "LDC2002S09", "LDC2002T43", MANIFEST_NAME)
