"""A small synthetic Switchboard-1 + Hub5'00 in the real LDC layout (8 kHz, 2-channel mu-law).

Usage::

    python -m d2v_speech.synthetic.switchboard --out_dir data/MiniSwitchboard \
        [--conversations 24] [--eval_conversations 3] [--seed 0] [--jobs 2] [--force]

Layout written under ``out_dir`` (as the LDC releases and the OpenSLR ms98 tarball unpack)::

    LDC97S62/docs/conv_tab.csv                 conversation -> callers on side A and B
    LDC97S62/docs/caller_tab.csv               caller -> sex, birth year, ... (synthetic)
    LDC97S62/docs/swb1_all.dvd.tbl             "swb1_dN sw0NNNN.sph" (disc of each file)
    LDC97S62/swb1_d1..swb1_d4/data/sw0NNNN.sph two channels, 8 kHz, mu-law NIST SPHERE
    swb_ms98_transcriptions/NN/NNNN/swNNNN{A,B}-ms98-a-trans.text
    swb_ms98_transcriptions/sw-ms98-dict.text  pronunciations (flite's t2p) of every token
    swb_ms98_transcriptions/AAREADME.text
    LDC2002S09/hub5e_00/english/{sw_NNNN,en_NNNN}.sph   Hub5'00 audio (Switchboard, CallHome)
    LDC2002S09/hub5e_00/english/hub5e_00.pem            scored segments (Kaldi reads this)
    LDC2002T43/2000_hub5_eng_eval_tr/reference/hub5e00.english.000405.stm
    LDC2002T43/2000_hub5_eng_eval_tr/reference/en20000405_hub5.glm
    mini_switchboard.json                      settings, counts, hours, speakers, markup counts

How a conversation is made: two TTS speakers (one per channel) take turns of 1-3 segments,
one fortune sentence each; the listener sometimes answers a pause with a backchannel
("uh-huh", "yeah", a laugh). Silent stretches hold low pink noise; everything is band-passed
to the telephone band (300-3400 Hz; CallHome 250-3300 Hz with more noise) before mu-law.
Speech never overlaps across channels (a simplification of real Switchboard), so every
transcript segment is the only sound on its side's channel.

Transcript markup follows the ms98 conventions, lower case, at roughly Switchboard rates, and
the audio renders what it means: ``uh``/``um`` are said; ``th[e]-`` keeps only the spoken
head of the synthesised word, ``-[th]at`` only its tail; ``[laughter-yes]`` is the word said
with a laugh-like tremolo; ``[laughter]`` is a train of breathy voiced pulses; ``[noise]`` a
decaying noise burst; ``[vocalized-noise]`` a short hum; ``{bookish}`` (coinage) and
``them_1`` (reduced "'em") are said as written/meant; ``<b_aside> ... <e_aside>`` encloses
spoken words. Hub5'00 references use the NIST STM conventions, upper case:
``(%HESITATION)`` and ``(UH)`` (optionally deletable, said "uh"/"um"), fragments ``(BEC-)``
(only the head is said) and ``IGNORE_TIME_SEGMENT_IN_SCORING`` over unintelligible
(time-reversed) speech. Words of Hub5'00 speakers come from voices no training speaker uses
(the voice table's held-out groups: "dev-other" voices for the Switchboard part, "test-other"
voices for CallHome).

Like :mod:`d2v_speech.synthetic.librispeech` (the LibriSpeech-style generator beside it, with
which it shares ``d2v_speech.synthetic``'s staging, TTS, voice, acoustics and sentence modules):
each conversation has its own random generator seeded by (seed, conversation index), so output
bytes do not depend on ``jobs``; files go to a staging folder that is moved into place when
complete, then a stamp records the settings so a rerun with the same settings is a fast no-op; an
interrupted run resumes from staging.
Identical bytes need identical espeak-ng, flite, libsndfile and fortunes versions.

Modules, in the order of the work: ``planning`` (conversations, speaker pairs), ``markup``
(ms98/STM tokens), ``sounds`` (the audio of tokens), ``conversations`` (lay-out, mixing),
``render`` (workers writing .sph), ``dictionary`` and ``ldc_files`` (text files),
``manifest`` and ``generate`` (staging, publishing, the command line); ``corpus_layout``
names the folders and files.
"""

from d2v_speech.synthetic.switchboard.generate import generate_mini_switchboard, main

__all__ = ["generate_mini_switchboard", "main"]
