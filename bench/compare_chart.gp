# Throughput and p99 latency of etcd API puts against the client count, one line per system,
# from bench/compare.sh's sweep.dat (one block per system, its name in the block's header).
# Usage: gnuplot -e "data='sweep.dat'; out='chart.png'; title='...'" bench/compare_chart.gp
if (!exists("data")) data = 'sweep.dat'
if (!exists("out")) out = 'chart.png'
if (!exists("title")) title = 'raftkv vs etcd'
set terminal pngcairo size 1200,500 font ",10"
set output out
stats data using 1 nooutput
blocks = STATS_blocks
set multiplot layout 1,2 title title
set logscale x
set xlabel "clients (over min(clients, 100) connections)"
set grid
set key top left
set ylabel "puts/s"
set yrange [0:*]
set title "throughput"
plot for [i=0:blocks-1] data index i using 1:2 with linespoints lw 2 pt 7 title columnheader(1)
set ylabel "p99 latency (ms)"
set logscale y
set yrange [*:*]
set title "p99 latency"
plot for [i=0:blocks-1] data index i using 1:3 with linespoints lw 2 pt 7 title columnheader(1)
unset multiplot
