# Shared by the experiment scripts (sourced): train a model on SciFact train and evaluate it on
# SciFact test and the MS MARCO slice, skipping what is done. Run from the run folder.
# TRAIN_OPTIONS (an array, may be empty) is appended to every `train`.
TRAIN_OPTIONS=("${TRAIN_OPTIONS[@]+"${TRAIN_OPTIONS[@]}"}")

evaluate() {  # evaluate MODEL NAME
  for data in scifact msmarco-dl19-5k; do
    [ -f "$2.$data.json" ] || beir-peft evaluate --model "$1" --dataset "$data" --split test -q -o "$2.$data.json"
  done
}

train() {  # train NAME METHOD [options...]
  local name=$1; shift
  [ -f "$name/config.json" ] || beir-peft train "$@" --dataset scifact --split train --output "$name" -q --resume \
    "${TRAIN_OPTIONS[@]+"${TRAIN_OPTIONS[@]}"}"
  evaluate "$name" "$name"
}
