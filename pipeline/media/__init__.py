"""Media helpers on moviepy/imageio-ffmpeg: probe clips, encode with the one H.264 profile, compose frames, assemble videos."""
