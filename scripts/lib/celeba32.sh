# Sourced by the CelebA 32x32 scripts (celeba32_cpu.sh, quality_tax.sh, sg2_finetune.sh); not run on its own.
# celeba32_data DATA: makes datasets/celeba32.zip (10,000 CelebA faces, 32x32, from SGF_SHARED_DIR, ../shared by
# default) when DATA is that default and missing; any other DATA must exist.
celeba32_data() {
  local data=$1
  [ -f "$data" ] && return 0
  [ "$data" = datasets/celeba32.zip ] || { echo "error: DATA=$data does not exist" >&2; exit 2; }
  python dataset_tool.py create_celeba --source "${SGF_SHARED_DIR:-../shared}/data/celeba_89x109" --dest "$data" \
    --cx 44.5 --cy 60.5 --size 64 --resolution 32 --max-images 10000
}
