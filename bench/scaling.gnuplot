# Renders the scaling benchmark's CSV (osmem_bench --csv) as docs/scaling.png.
#   gnuplot -e "csv='build/release/scaling.csv'; out='docs/scaling.png'" bench/scaling.gnuplot
if (!exists("csv")) csv = 'build/release/scaling.csv'
if (!exists("out")) out = 'docs/scaling.png'
set terminal pngcairo size 1100,450 font ",10"
set output out
set datafile separator ","
set key top left
set logscale x 10
set xlabel "live blocks (N)"
set grid
set multiplot layout 1,2
set title "ns per operation (steady free+malloc stream)"
set logscale y 10
set ylabel "ns / op"
plot csv using 1:2 skip 1 with linespoints lw 2 title "osmem", \
     csv using 1:3 skip 1 with linespoints lw 2 title "glibc malloc", \
     csv using 1:6 skip 1 with linespoints lw 2 title "linear scan (seed)", \
     csv using 1:7 skip 1 with linespoints lw 2 title "reference model"
set title "blocks visited per index operation"
unset logscale y
set ylabel "blocks"
set yrange [0:*]
plot csv using 1:4 skip 1 with linespoints lw 2 title "search: mean", \
     csv using 1:5 skip 1 with linespoints lw 2 title "search: max", \
     csv using 1:8 skip 1 with linespoints lw 2 title "any index op: mean", \
     csv using 1:9 skip 1 with linespoints lw 2 title "any index op: max"
unset multiplot
