# Turn a text file into a C string constant: cmake -DIN=file -DOUT=file.c -DNAME=symbol -P embed.cmake
file(READ "${IN}" hex HEX)
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," body "${hex}")
file(WRITE "${OUT}" "/* GENERATED from ${IN} by embed.cmake, DO NOT EDIT */\nextern const char ${NAME} [];\nconst char ${NAME} [] = { ${body} 0 };\n")
