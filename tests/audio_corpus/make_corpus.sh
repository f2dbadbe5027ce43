#!/usr/bin/env bash
# Regenerates the audio test corpus: one small real file per case that tests/test_audio.py
# checks (what telephony systems export, and what the importer must refuse). Needs espeak-ng,
# sox, lame, ffmpeg and python3 (Debian: apt-get install espeak-ng sox libsox-fmt-all lame
# ffmpeg). The outputs are committed, so the tests and CI need none of these tools; this
# script documents how each file was made. Files stay short (about 2.5 s) to keep the corpus
# small. A new run does not give the same bytes (sox dithers, encoders vary), but the tests
# pass on its output too: they check formats, durations and reasons, not bytes.
set -euo pipefail
cd "$(dirname "$0")"
rm -f -- *.wav *.WAV *.mp3 *.Mp3 *.ogg *.flac *.m4a *.amr *.wma *.aiff
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

espeak-ng -v en-us -s 170 -w "$tmp/speech.wav" "Thank you for calling, how can I help?"
espeak-ng -v en-us -s 170 -w "$tmp/agent.wav" "Let me look that up for you."
sox "$tmp/speech.wav" -r 8000 -c 1 -b 16 "$tmp/s8k.wav"           # the source for most files
sox "$tmp/speech.wav" -r 32000 -c 1 -b 16 "$tmp/s32k.wav"

# --- accepted: wav as telephony writes it -------------------------------------------------
sox "$tmp/s8k.wav" -e signed-integer -b 16 pcm-8k-mono.wav          # classic PBX export
sox "$tmp/s8k.wav" -e mu-law ulaw-8k.wav                            # G.711 mu-law (US)
sox "$tmp/s8k.wav" -e a-law alaw-8k.wav                             # G.711 A-law (Europe)
sox "$tmp/s8k.wav" -e gsm-full-rate gsm610-8k.wav                   # GSM 6.10, format 0x0031
sox "$tmp/s8k.wav" -b 24 extensible-pcm24.wav                       # WAVE_FORMAT_EXTENSIBLE
# Dual-channel: caller left, agent right.
sox -M "$tmp/s8k.wav" "|sox $tmp/agent.wav -r 8000 -p" -b 16 stereo-dual-channel.wav \
  trim 0 1.5
# LIST/INFO and bext chunks between fmt and data, as recorders that tag their files write.
ffmpeg -nostdin -loglevel error -i "$tmp/s8k.wav" -c:a pcm_s16le -write_bext 1 \
  -metadata title="Inbound call 4471" -metadata artist="Acme PBX" \
  -metadata comment="queue=sales agent=212" list-info-before-data.wav

# --- accepted: mp3, every MPEG version, CBR and VBR, with and without tags ----------------
lame --quiet -b 32 --resample 32 --add-id3v2 --tt "Inbound call" --ta "Acme PBX" \
  "$tmp/s32k.wav" mpeg1-cbr-id3v1-id3v2.mp3                         # MPEG-1, ID3v1 + ID3v2
lame --quiet -V 9 --resample 32 --noreplaygain "$tmp/s32k.wav" mpeg1-vbr-xing.mp3 # MPEG-1 VBR, Xing/LAME tag
lame --quiet -b 32 --resample 32 -t "$tmp/s32k.wav" mpeg1-cbr-notag.mp3           # no Xing frame, no ID3
lame --quiet -b 24 --resample 16 --id3v2-only --tt "Voicemail" \
  "$tmp/speech.wav" mpeg2-cbr-id3v2.mp3                             # MPEG-2 16 kHz
lame --quiet -V 7 -t --resample 22.05 "$tmp/speech.wav" mpeg2-vbr-noxing.mp3  # VBR, no Xing
lame --quiet -b 16 --id3v1-only --tt "Callback" "$tmp/s8k.wav" mpeg25-cbr-id3v1.mp3  # 2.5
# Stereo (caller and agent): the Xing header sits elsewhere in a two-channel frame.
lame --quiet -V 9 --resample 32 stereo-dual-channel.wav mpeg1-stereo-vbr.mp3
lame --quiet -b 32 --resample 16 -m s stereo-dual-channel.wav mpeg2-stereo-cbr.mp3
# The last frame cut short (a copy interrupted at the end): still plays.
python3 - <<'PY'
data = open("mpeg1-cbr-notag.mp3", "rb").read()
open("mpeg1-truncated-last-frame.mp3", "wb").write(data[:-37])
PY

# --- accepted: names as exports have them ----------------------------------------------------
cp alaw-8k.wav "UPPER CASE.WAV"
cp mpeg25-cbr-id3v1.mp3 "Mixed Case.Mp3"
cp pcm-8k-mono.wav "llamada de José Núñez 12.wav"
cp mpeg2-cbr-id3v2.mp3 "звонок клиента.mp3"

# --- refused ---------------------------------------------------------------------------------
: > empty.wav                                                       # 0 bytes
head -c 6000 pcm-8k-mono.wav > truncated-header-promises-more.wav   # copy cut short
sox "$tmp/s8k.wav" zero-duration.wav trim 0 0                       # header, no samples
# A recorder that crashed before patching its header: data size 0, yet the audio follows.
python3 -c "import sys; d = bytearray(open('pcm-8k-mono.wav', 'rb').read()); d[40:44] = bytes(4);
sys.stdout.buffer.write(d)" > unfinished-header.wav
printf 'ID3\x04\x00\x00\x00\x00\x00\x00' > id3-tag-no-audio.mp3     # a tag and nothing else
printf 'caller,agent,notes\n6175550142,212,"wants a callback on Tuesday"\n' > call-notes.mp3
printf 'Recording unavailable: the PBX purged it after 90 days.\n' > call-notes.wav
python3 -c "import random, sys; random.seed(4); sys.stdout.buffer.write(random.randbytes(3000))" \
  > random-bytes.wav
python3 -c "import random, sys; random.seed(5); sys.stdout.buffer.write(random.randbytes(3000))" \
  > random-bytes.mp3
sox "$tmp/s8k.wav" voicemail.ogg                                    # Ogg Vorbis
sox "$tmp/s8k.wav" voicemail.flac
ffmpeg -nostdin -loglevel error -i "$tmp/s8k.wav" -c:a aac -b:a 16k voicemail.m4a
sox "$tmp/s8k.wav" -t amr-nb voicemail.amr                          # AMR-NB, mobile phones
ffmpeg -nostdin -loglevel error -i "$tmp/s8k.wav" -c:a wmav2 -b:a 24k voicemail.wma
sox "$tmp/s8k.wav" voicemail.aiff
ffmpeg -nostdin -loglevel error -i "$tmp/s32k.wav" -c:a mp2 -b:a 32k -f mp2 mpeg1-layer2.mp3  # mp2
cp mpeg1-cbr-notag.mp3 mp3-named-as.wav                             # content vs. extension
cp pcm-8k-mono.wav wav-named-as.mp3
cp voicemail.flac flac-named-as.wav
ls -l
du -ch . | tail -1
