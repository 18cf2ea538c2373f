#!/usr/bin/env bash
# Table 1 of the paper for LSUN Cat 256x256 (scripts/table1.py --dataset cat256): prepares the data, then trains and
# evaluates the three rows (paper: FID / bit accuracy):
#   StyleGAN2 without fingerprint: train_stylegan2_fp.py --cfg paper --bits 0               (paper 31.01)
#   scalable fingerprinting: --cfg paper, 128 bits, resolutions 4-256 modulated              (paper 33.94 / 0.996)
#   artificial fingerprinting: a 128-bit fingerprint autoencoder (train_fingerprint_ae.py), one fingerprint
#     embedded into every training image, the plain StyleGAN2 trained on that copy, its samples decoded
#                                                                                   (paper 32.60 / 0.990)
# Data: LSUN's cat LMDB release folder: the first 50,000 images (key order), centre crop, resized to 256.
# Lengths: 25,000 kimg for each GAN (this project's default: the paper states none; the release's default of
# 88,000 kimg is not what its models used), the autoencoder 20 epochs of the data set; --kimg, --ae-epochs.
# FID: fid_watermark_accuracy_30k (30,000 samples against the first 30,000 training images; the scalable row's
# bit accuracy on the same samples), Inception-v3 from --inception (StyleGAN2-ADA's TorchScript file).
#   bash scripts/cat256.sh /path/to/cat_lmdb --inception inception-2015-12-05.pt [scripts/table1.py flags]
#   bash scripts/cat256.sh /path/to/cat_lmdb --dry-run        # every command, the settings and the GPU-hours
# Rerunning the same command resumes (finished steps are skipped); the rows go to
# runs/table1/cat256/table1.csv and table1.md. --snapshot ROW=PATH takes a trained snapshot or a release .pkl.
set -euo pipefail
src=${1:?usage: $0 /path/to/cat_lmdb --inception FILE [scripts/table1.py flags]}; shift
exec python "$(dirname "$0")/table1.py" --dataset cat256 --source "$src" "$@"
