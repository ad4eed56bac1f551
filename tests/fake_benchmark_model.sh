#!/bin/sh
# STAND-IN for TFLite's benchmark_model (tensorflow/lite/tools/benchmark), used ONLY by the adb tests: there is no
# Android arm64 benchmark_model binary on CI. It checks its flags like the real tool and prints the real tool's
# documented output format (see the tool's README) with FIXED, made-up timings; it measures nothing.
graph=""; runs=50; warmup=1; threads=-1; xnn=""; ops=""
for a in "$@"; do
    case "$a" in
        --graph=*) graph=${a#--graph=} ;;
        --num_runs=*) runs=${a#--num_runs=} ;;
        --warmup_runs=*) warmup=${a#--warmup_runs=} ;;
        --num_threads=*) threads=${a#--num_threads=} ;;
        --use_xnnpack=*) xnn=${a#--use_xnnpack=} ;;
        --enable_op_profiling=*) ops=${a#--enable_op_profiling=} ;;
    esac
done
echo "INFO: STARTING!"
echo "INFO: Log parameter values verbosely: [0]"
echo "INFO: Min num runs: [$runs]"
echo "INFO: Num threads: [$threads]"
echo "INFO: Min warmup runs: [$warmup]"
echo "INFO: Graph: [$graph]"
echo "INFO: Use xnnpack: [$xnn]"
echo "INFO: CPU affinity (stand-in): [$(cat /proc/self/status 2>/dev/null | sed -n 's/^Cpus_allowed_list:[[:space:]]*//p')]"
if [ ! -f "$graph" ]; then
    echo "ERROR: Could not open '$graph'." >&2
    echo "ERROR: Failed to mmap model $graph" >&2
    exit 1
fi
if [ "$(head -c 8 "$graph" | tail -c 4)" != "TFL3" ]; then
    echo "ERROR: The model is not a valid Flatbuffer buffer" >&2
    echo "ERROR: Failed to load model $graph" >&2
    echo "ERROR: Benchmarking failed." >&2
    exit 1
fi
echo "INFO: Loaded model $graph"
echo "INFO: The input model file size (MB): 0.002372"
echo "INFO: Initialized session in 5.579ms."
echo "INFO: Running benchmark for at least $warmup iterations and at least 0 seconds but terminate if exceeding 150 seconds."
echo "INFO: count=$warmup first=1357 curr=1300 min=1290 max=1357 avg=1320.5 std=25 p5=1290 median=1310 p95=1357"
echo ""
echo "INFO: Running benchmark for at least $runs iterations and at least 0 seconds but terminate if exceeding 150 seconds."
echo "INFO: count=$runs first=1249 curr=1240 min=1238 max=1252 avg=1.24027e+03 std=2.5 p5=1238 median=1239 p95=1247"
echo ""
echo "INFO: Inference timings in us: Init: 5579, First inference: 1357, Warmup (avg): 1320.5, Inference (avg): 1240.27"
echo "INFO: Note: as the benchmark tool itself affects memory footprint, the following is only APPROXIMATE to the actual memory footprint of the model at runtime. Take the information at your discretion."
echo "INFO: Memory footprint delta from the start of the tool (MB): init=6.36328 overall=9.832"
echo "INFO: Overall peak memory footprint (MB) via periodic monitoring: 12.5"
if [ "$ops" = "true" ]; then  # the documented --enable_op_profiling table (node types as with XNNPACK), made-up times
    printf 'INFO: Operator-wise Profiling Info for Regular Benchmark Runs:\n'
    printf '============================== Run Order ==============================\n'
    printf '\t             [node type]\t          [first]\t         [avg ms]\t             [%%]\t          [cdf%%]\t          [mem KB]\t      [times called]\t            [Name]\n'
    printf '\t                QUANTIZE\t            0.050\t            0.040\t          3.226%%\t          3.226%%\t             0.000\t                   1\t[tfl.quantize]:0\n'
    printf '\t   TfLiteXNNPackDelegate\t            1.000\t            0.900\t         72.581%%\t         75.806%%\t             0.000\t                   1\t[model/conv/Relu, model/conv2/Relu]:5\n'
    printf '\t         AVERAGE_POOL_2D\t            0.310\t            0.300\t         24.194%%\t        100.000%%\t             0.000\t                   1\t[model/gap/Mean]:6\n'
    printf '\n============================== Top by Computation Time ==============================\n'
fi
