
B
18446744073709551615
echokéy*
Echoapplication/json{}