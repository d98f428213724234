# Renders the check-level benchmark's CSV (osmem_check_levels --csv) as
# docs/check_levels.png: ns per operation of each OSMEM_CHECK level against
# live blocks, and each level's ratio to the engine without debug checks.
#   gnuplot -e "csv='build/release/check_levels.csv'; out='docs/check_levels.png'" bench/check_levels.gnuplot
if (!exists("csv")) csv = 'build/release/check_levels.csv'
if (!exists("out")) out = 'docs/check_levels.png'
set terminal pngcairo size 1100,450 font ",10"
set output out
set datafile separator ","
set datafile missing ""
set key autotitle columnhead
set key top left
set logscale x 10
set xlabel "live blocks (N)"
set grid
set multiplot layout 1,2
set title "ns per operation (free+malloc pairs)"
set logscale y 10
set ylabel "ns / op"
plot for [c=2:9] csv using 1:c with linespoints lw 2
set title "ratio to release (goals at 100k: local 3x, sweep 5x)"
set ylabel "x release"
plot for [c=3:7] csv using 1:(column(c)/column(2)) with linespoints lw 2 title columnhead(c), \
     3 with lines dt 2 lc rgb "gray" title "3x", 5 with lines dt 3 lc rgb "gray" title "5x"
unset multiplot
